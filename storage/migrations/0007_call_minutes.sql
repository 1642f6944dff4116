-- 0007_call_minutes: per-minute rollups of the calls (and counts per duration), so `stats`, `health` and the
-- `method_stats` view answer from a few thousand rows instead of reading every call (a
-- million calls took 4-5 s). One row per minute (the first 16 characters of `started_at`,
-- 'YYYY-MM-DD HH:MM', so the minutes split exactly where `started_at >= ?` does), session,
-- service and method. The writer adds each batch's calls in the batch's own transaction
-- (cri_proxy/recorder/rollups.py runs the SELECT below over the new rows); the trigger takes
-- out every call deleted (retention, snapshot's cut, a user's DELETE). Reading an older file
-- computes the same rows from its calls on the fly (cri_proxy/store/compat.py reads this
-- file's SELECT, so the three cannot drift apart).
--
-- `call_durations` counts the calls of each duration per service and method (durations are
-- stored to the microsecond, so a method has a few thousand distinct ones, not one per
-- call): `method_stats` finds its exact nearest-rank percentiles by summing along it.

CREATE TABLE call_minutes (
    minute TEXT NOT NULL,
    session_id INTEGER NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    nonzero_exits INTEGER NOT NULL,
    timed INTEGER NOT NULL,
    duration_ms_sum REAL NOT NULL,
    max_ms REAL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    PRIMARY KEY (minute, session_id, service, method)
) WITHOUT ROWID;

INSERT INTO call_minutes (minute, session_id, service, method, calls, errors, nonzero_exits, timed,
                          duration_ms_sum, max_ms, request_bytes, response_bytes)
SELECT substr(started_at, 1, 16) AS minute, session_id, service, method,
       COUNT(*) AS calls,
       SUM(status_code IS NOT 0 OR outcome <> 'completed') AS errors,
       SUM(exit_code IS NOT NULL AND exit_code <> 0) AS nonzero_exits,
       COUNT(duration_ms) AS timed,
       TOTAL(duration_ms) AS duration_ms_sum,
       MAX(duration_ms) AS max_ms,
       SUM(request_bytes) AS request_bytes,
       SUM(response_bytes) AS response_bytes
  FROM calls
 WHERE 1
 GROUP BY substr(started_at, 1, 16), session_id, service, method;

CREATE TABLE call_durations (
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (service, method, duration_ms)
) WITHOUT ROWID;

INSERT INTO call_durations (service, method, duration_ms, calls)
SELECT service, method, duration_ms, COUNT(*) AS calls
  FROM calls
 WHERE duration_ms IS NOT NULL
 GROUP BY service, method, duration_ms;

-- A deleted call leaves its duration's count and its minute's counts; when it was that minute's longest, the longest
-- of those left is looked up (one minute's calls, through the started_at index).
CREATE TRIGGER call_minutes_forget AFTER DELETE ON call_rows
BEGIN
    UPDATE call_durations SET calls = calls - 1
     WHERE service = OLD.service AND method = OLD.method AND duration_ms = OLD.duration_ms;
    DELETE FROM call_durations
     WHERE service = OLD.service AND method = OLD.method AND duration_ms = OLD.duration_ms AND calls <= 0;
    UPDATE call_minutes
       SET calls = calls - 1,
           errors = errors - (OLD.status_code IS NOT 0 OR OLD.outcome <> 'completed'),
           nonzero_exits = nonzero_exits - (OLD.exit_code IS NOT NULL AND OLD.exit_code <> 0),
           timed = timed - (OLD.duration_ms IS NOT NULL),
           duration_ms_sum = duration_ms_sum - COALESCE(OLD.duration_ms, 0),
           request_bytes = request_bytes - OLD.request_bytes,
           response_bytes = response_bytes - OLD.response_bytes,
           max_ms = CASE WHEN OLD.duration_ms >= max_ms THEN (
               SELECT MAX(c.duration_ms) FROM call_rows AS c
                WHERE c.started_at >= substr(OLD.started_at, 1, 16)
                  AND c.started_at < substr(OLD.started_at, 1, 16) || ':~'
                  AND c.session_id = OLD.session_id AND c.service = OLD.service AND c.method = OLD.method)
               ELSE max_ms END
     WHERE minute = substr(OLD.started_at, 1, 16) AND session_id = OLD.session_id
       AND service = OLD.service AND method = OLD.method;
    DELETE FROM call_minutes
     WHERE minute = substr(OLD.started_at, 1, 16) AND session_id = OLD.session_id
       AND service = OLD.service AND method = OLD.method AND calls <= 0;
END;
