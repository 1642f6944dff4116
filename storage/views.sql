-- Named views over the recording. cri_proxy.store.db drops the views named here (a user's own
-- views are left alone) and runs this file
-- each time a database is opened for writing, so views always match this version.
-- A call "failed" when its gRPC status is not OK or it never completed (cancelled,
-- connection closed, unparsed). Latency percentiles use the nearest-rank method: pXX is
-- the smallest duration whose rank r (1-based, ascending) satisfies r * 100 >= XX * n.

CREATE VIEW errors AS
SELECT id AS call_id, session_id, started_at, duration_ms, service, method,
       status_code, status_name, status_message, outcome,
       pod_sandbox_id, pod_name, pod_namespace, container_id, image
FROM calls
WHERE status_code IS NOT 0 OR outcome <> 'completed';

-- Fixed threshold: 1 s. GetContainerEvents is a stream held open for hours by design and is
-- left out. For outliers relative to each method, compare with method_stats.p99_ms.
CREATE VIEW slow_calls AS
SELECT id AS call_id, session_id, started_at, duration_ms, service, method,
       status_name, outcome,
       pod_sandbox_id, pod_name, pod_namespace, container_id, image
FROM calls
WHERE duration_ms > 1000 AND method <> 'GetContainerEvents';

-- From the rollups rather than every call: counts, failures, mean and longest duration from
-- call_minutes; the percentiles, exact (nearest rank), by summing call_durations' counts in
-- order of duration: pXX is the first duration whose running count reaches XX% of the
-- timed calls. The first and last call are looked up in the first and last minute the
-- method was seen (`+c.method`: through the started_unix index, one minute's calls, a
-- millisecond either side for the text's rounding, the minute's own text then compared).
CREATE VIEW method_stats AS
WITH per AS (
    SELECT service, method, SUM(calls) AS calls, SUM(errors) AS errors, SUM(timed) AS timed,
           TOTAL(duration_ms_sum) AS total_ms, MAX(max_ms) AS max_ms,
           MIN(minute) AS first_minute, MAX(minute) AS last_minute
    FROM call_minutes
    GROUP BY service, method
), running AS MATERIALIZED (
    SELECT service, method, duration_ms,
           SUM(calls) OVER (PARTITION BY service, method ORDER BY duration_ms ROWS UNBOUNDED PRECEDING) AS upto
    FROM call_durations
), pct AS (
    SELECT per.service, per.method,
           MIN(CASE WHEN r.upto * 100 >= per.timed * 50 THEN r.duration_ms END) AS p50_ms,
           MIN(CASE WHEN r.upto * 100 >= per.timed * 95 THEN r.duration_ms END) AS p95_ms,
           MIN(CASE WHEN r.upto * 100 >= per.timed * 99 THEN r.duration_ms END) AS p99_ms
    FROM per JOIN running AS r ON r.service = per.service AND r.method = per.method
    GROUP BY per.service, per.method
)
SELECT per.service, per.method, calls, errors,
       ROUND(1.0 * errors / calls, 4) AS error_rate,
       ROUND(total_ms / timed, 3) AS avg_ms,
       pct.p50_ms, pct.p95_ms, pct.p99_ms,
       max_ms,
       (SELECT MIN(c.started_at) FROM calls AS c
         WHERE c.started_unix >= CAST(strftime('%s', first_minute) AS INTEGER) - 0.001
           AND c.started_unix < CAST(strftime('%s', first_minute) AS INTEGER) + 60.001
           AND substr(c.started_at, 1, 16) = first_minute AND +c.service = per.service AND +c.method = per.method)
           AS first_at,
       (SELECT MAX(c.started_at) FROM calls AS c
         WHERE c.started_unix >= CAST(strftime('%s', last_minute) AS INTEGER) - 0.001
           AND c.started_unix < CAST(strftime('%s', last_minute) AS INTEGER) + 60.001
           AND substr(c.started_at, 1, 16) = last_minute AND +c.service = per.service AND +c.method = per.method)
           AS last_at
FROM per LEFT JOIN pct ON pct.service = per.service AND pct.method = per.method;

-- One row per pod sandbox id. RunPodSandbox learns the id from its response, so a
-- RunPodSandbox that failed has no id and shows up in `errors` instead.
CREATE VIEW pod_lifecycle AS
WITH steps AS (
    SELECT pod_sandbox_id, method, started_at, duration_ms,
           COALESCE(status_name, outcome) AS status,
           ROW_NUMBER() OVER (PARTITION BY pod_sandbox_id, method ORDER BY started_unix)
               AS first_rank,
           ROW_NUMBER() OVER (PARTITION BY pod_sandbox_id, method ORDER BY started_unix DESC)
               AS last_rank
    FROM calls
    WHERE pod_sandbox_id IS NOT NULL
      AND method IN ('RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox')
), pods AS (
    SELECT pod_sandbox_id, MIN(session_id) AS session_id,
           MAX(pod_name) AS pod_name, MAX(pod_namespace) AS pod_namespace,
           COUNT(DISTINCT container_id) AS containers,
           COUNT(*) AS calls,
           MIN(started_at) AS first_seen_at, MAX(started_at) AS last_seen_at
    FROM calls
    WHERE pod_sandbox_id IS NOT NULL
    GROUP BY pod_sandbox_id
)
SELECT p.pod_sandbox_id, p.session_id, p.pod_name, p.pod_namespace,
       MAX(CASE WHEN s.method = 'RunPodSandbox' AND s.first_rank = 1 THEN s.started_at END)
           AS created_at,
       MAX(CASE WHEN s.method = 'RunPodSandbox' AND s.first_rank = 1 THEN s.duration_ms END)
           AS create_ms,
       MAX(CASE WHEN s.method = 'RunPodSandbox' AND s.last_rank = 1 THEN s.status END)
           AS create_status,
       MAX(CASE WHEN s.method = 'StopPodSandbox' AND s.first_rank = 1 THEN s.started_at END)
           AS stopped_at,
       MAX(CASE WHEN s.method = 'StopPodSandbox' AND s.last_rank = 1 THEN s.status END)
           AS stop_status,
       SUM(s.method = 'StopPodSandbox') AS stop_calls,
       MAX(CASE WHEN s.method = 'RemovePodSandbox' AND s.first_rank = 1 THEN s.started_at END)
           AS removed_at,
       MAX(CASE WHEN s.method = 'RemovePodSandbox' AND s.last_rank = 1 THEN s.status END)
           AS remove_status,
       p.containers, p.calls, p.first_seen_at, p.last_seen_at
FROM pods AS p
LEFT JOIN steps AS s ON s.pod_sandbox_id = p.pod_sandbox_id
GROUP BY p.pod_sandbox_id;

-- One row per container id. CreateContainer learns the id from its response; the
-- container's name is read from CreateContainer's decoded request.
CREATE VIEW container_lifecycle AS
WITH steps AS (
    SELECT container_id, method, started_at, started_unix, duration_ms,
           COALESCE(status_name, outcome) AS status,
           ROW_NUMBER() OVER (PARTITION BY container_id, method ORDER BY started_unix)
               AS first_rank,
           ROW_NUMBER() OVER (PARTITION BY container_id, method ORDER BY started_unix DESC)
               AS last_rank
    FROM calls
    WHERE container_id IS NOT NULL
      AND method IN ('CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer')
), containers AS (
    SELECT container_id, MIN(session_id) AS session_id, MAX(pod_sandbox_id) AS pod_sandbox_id,
           MAX(pod_name) AS pod_name, MAX(pod_namespace) AS pod_namespace,
           MAX(image) AS image, COUNT(*) AS calls,
           MIN(started_at) AS first_seen_at, MAX(started_at) AS last_seen_at
    FROM calls
    WHERE container_id IS NOT NULL
    GROUP BY container_id
)
SELECT c.container_id, c.session_id,
       (SELECT json_extract(p.json, '$.config.metadata.name')
        FROM calls AS cc
        JOIN messages AS m ON m.call_id = cc.id AND m.direction = 'request' AND m.idx = 0
        JOIN payloads AS p ON p.id = m.payload_id
        WHERE cc.container_id = c.container_id AND cc.method = 'CreateContainer'
        LIMIT 1) AS container_name,
       c.pod_sandbox_id, c.pod_name,
       c.pod_namespace, c.image,
       MAX(CASE WHEN s.method = 'CreateContainer' AND s.first_rank = 1 THEN s.started_at END)
           AS created_at,
       MAX(CASE WHEN s.method = 'CreateContainer' AND s.first_rank = 1 THEN s.duration_ms END)
           AS create_ms,
       MAX(CASE WHEN s.method = 'CreateContainer' AND s.last_rank = 1 THEN s.status END)
           AS create_status,
       MAX(CASE WHEN s.method = 'StartContainer' AND s.first_rank = 1 THEN s.started_at END)
           AS started_at,
       MAX(CASE WHEN s.method = 'StartContainer' AND s.first_rank = 1 THEN s.duration_ms END)
           AS start_ms,
       MAX(CASE WHEN s.method = 'StartContainer' AND s.last_rank = 1 THEN s.status END)
           AS start_status,
       ROUND(1000 * (
           MAX(CASE WHEN s.method = 'StartContainer' AND s.first_rank = 1
                    THEN s.started_unix + s.duration_ms / 1000 END)
           - MAX(CASE WHEN s.method = 'CreateContainer' AND s.first_rank = 1
                      THEN s.started_unix END)), 3) AS create_to_started_ms,
       MAX(CASE WHEN s.method = 'StopContainer' AND s.first_rank = 1 THEN s.started_at END)
           AS stopped_at,
       MAX(CASE WHEN s.method = 'StopContainer' AND s.last_rank = 1 THEN s.status END)
           AS stop_status,
       MAX(CASE WHEN s.method = 'RemoveContainer' AND s.first_rank = 1 THEN s.started_at END)
           AS removed_at,
       MAX(CASE WHEN s.method = 'RemoveContainer' AND s.last_rank = 1 THEN s.status END)
           AS remove_status,
       c.calls, c.first_seen_at, c.last_seen_at
FROM containers AS c
LEFT JOIN steps AS s ON s.container_id = c.container_id
GROUP BY c.container_id;

-- The request's body through a scalar subquery, not `LEFT JOIN messages`: since schema 12
-- `messages` is a join (call_rows, shape_messages), and SQLite reads a join on the right of a
-- LEFT JOIN whole (materializes it) where it flattens the same view in a subquery.
CREATE VIEW images_pulled AS
SELECT c.id AS call_id, c.session_id, c.started_at, c.duration_ms,
       json_extract(p.json, '$.image.image') AS requested,
       c.image,
       json_extract(p.json, '$.sandbox_config.metadata.name') AS pod_name,
       json_extract(p.json, '$.sandbox_config.metadata.namespace') AS pod_namespace,
       COALESCE(c.status_name, c.outcome) AS status, c.status_message
FROM calls AS c
LEFT JOIN payloads AS p ON p.id = (SELECT m.payload_id FROM messages AS m
                                   WHERE m.call_id = c.id AND m.direction = 'request' AND m.idx = 0)
WHERE c.method = 'PullImage';

-- Every message of every call with its body: raw bytes (`data`) and decoded `json`.
-- `rowid` is for datasette: its HTML table links each BLOB to `<view>/<rowid>.blob`, and a
-- view without a `rowid` column (messages is WITHOUT ROWID) failed the whole page with
-- "No item with that key". The payload id makes that link answer with the message's bytes.
CREATE VIEW call_messages AS
SELECT m.call_id, c.method, m.direction, m.idx, m.offset_ms, m.compressed,
       p.id AS payload_id, p.sha256, p.size, p.truncated, p.data, p.json, p.id AS rowid
FROM messages AS m
JOIN calls AS c ON c.id = m.call_id
JOIN payloads AS p ON p.id = m.payload_id;

-- ExecSync calls whose command exited non-zero: failing exec probes (and `kubectl exec`
-- without a TTY). Their gRPC status is OK, so `errors` does not list them. The pod comes
-- from the call itself or, as ExecSync names only the container, from its CreateContainer.
-- `stderr`: the first 200 characters of the answer's stderr when the stored JSON holds it as
-- text (valid UTF-8, marked `"_bytes": {"stderr": "text"}`); `stderr_base64` the same when it
-- is held as base64 (not UTF-8, or recorded before the markers, when every bytes field was).
CREATE VIEW failed_probes AS
SELECT c.id AS call_id, c.session_id, c.started_at, c.duration_ms, c.container_id,
       COALESCE(c.pod_sandbox_id, (SELECT MAX(cc.pod_sandbox_id) FROM calls AS cc
                                   WHERE cc.container_id = c.container_id AND cc.method = 'CreateContainer'))
           AS pod_sandbox_id,
       COALESCE(c.pod_name, (SELECT MAX(cc.pod_name) FROM calls AS cc
                             WHERE cc.container_id = c.container_id AND cc.method = 'CreateContainer'))
           AS pod_name,
       COALESCE(c.pod_namespace, (SELECT MAX(cc.pod_namespace) FROM calls AS cc
                                  WHERE cc.container_id = c.container_id AND cc.method = 'CreateContainer'))
           AS pod_namespace,
       (SELECT json_extract(p.json, '$.cmd') FROM messages AS m JOIN payloads AS p ON p.id = m.payload_id
        WHERE m.call_id = c.id AND m.direction = 'request' AND m.idx = 0) AS cmd,
       c.exit_code,
       (SELECT CASE WHEN json_extract(p.json, '$._bytes.stderr') = 'text'
                    THEN substr(json_extract(p.json, '$.stderr'), 1, 200) END
        FROM messages AS m JOIN payloads AS p ON p.id = m.payload_id
        WHERE m.call_id = c.id AND m.direction = 'response' AND m.idx = 0) AS stderr,
       (SELECT CASE WHEN json_extract(p.json, '$._bytes.stderr') IS NOT 'text'
                    THEN substr(json_extract(p.json, '$.stderr'), 1, 200) END
        FROM messages AS m JOIN payloads AS p ON p.id = m.payload_id
        WHERE m.call_id = c.id AND m.direction = 'response' AND m.idx = 0) AS stderr_base64
FROM calls AS c
WHERE c.method = 'ExecSync' AND c.exit_code IS NOT NULL AND c.exit_code <> 0;

-- Everything that went wrong, one row per call, by `kind`: `unfinished` (cancelled,
-- connection closed, unparsed: see `outcome`), `grpc_error` (completed with a status other
-- than OK; with `unfinished`, the one failure rule of `errors`) and `nonzero_exit` (an
-- ExecSync answered OK whose command exited non-zero, as in `failed_probes`).
CREATE VIEW problems AS
SELECT id AS call_id, session_id, started_at, duration_ms, service, method,
       CASE WHEN outcome <> 'completed' THEN 'unfinished'
            WHEN (status_code IS NOT 0 OR outcome <> 'completed') THEN 'grpc_error'
            ELSE 'nonzero_exit' END AS kind,
       status_code, status_name, status_message, outcome, exit_code,
       pod_sandbox_id, pod_name, pod_namespace, container_id, image
FROM calls
WHERE (status_code IS NOT 0 OR outcome <> 'completed') OR (exit_code IS NOT NULL AND exit_code <> 0);
