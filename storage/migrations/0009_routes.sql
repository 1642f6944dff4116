-- 0009_routes: a call's service, path, API versions and upstream stored once per route.
--
-- Every call of a method on a node goes the same way: the same service, path, client and
-- upstream CRI versions and upstream endpoint, about 107 bytes of text repeated on every row
-- (86 MB a day of an 80-pod node's 795,000 calls, benchmarks/storage.py). From this version
-- each distinct combination is one row of `routes` and a new call's row points at it
-- (`call_rows.route_id`), leaving its own five columns empty ('' where the column is NOT
-- NULL, else NULL); the `calls` view gives the route's values, so `calls` reads as before.
-- `method` stays in the row: queries filter on it and `calls_method` indexes it. Rows
-- already in the file keep their text and `route_id` NULL (nothing is rewritten).
--
-- The view and its triggers are made again, as 0008 made them, with the route's columns
-- read through `route_id`; the rollups' delete trigger (0007) too, since it read
-- `OLD.service`.

CREATE TABLE routes (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    path TEXT NOT NULL,
    client_api TEXT,
    upstream_api TEXT,
    upstream TEXT
);

-- One row per distinct route; NULLs compare equal here (a plain UNIQUE would not).
CREATE UNIQUE INDEX routes_identity ON routes (
    service, path, ifnull(client_api, ''), ifnull(upstream_api, ''), ifnull(upstream, '')
);

ALTER TABLE call_rows ADD COLUMN route_id INTEGER REFERENCES routes (id);

DROP TRIGGER calls_insert;
DROP TRIGGER calls_update;
DROP TRIGGER calls_delete;
DROP VIEW calls;
DROP TRIGGER call_minutes_forget;

CREATE VIEW calls AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id, r.started_at, r.started_unix, r.duration_ms,
       CASE WHEN r.route_id IS NULL THEN r.service ELSE (SELECT t.service FROM routes AS t WHERE t.id = r.route_id) END AS service,
       r.method,
       CASE WHEN r.route_id IS NULL THEN r.path ELSE (SELECT t.path FROM routes AS t WHERE t.id = r.route_id) END AS path,
       CASE WHEN r.route_id IS NULL THEN r.client_api ELSE (SELECT t.client_api FROM routes AS t WHERE t.id = r.route_id) END AS client_api,
       CASE WHEN r.route_id IS NULL THEN r.upstream_api ELSE (SELECT t.upstream_api FROM routes AS t WHERE t.id = r.route_id) END AS upstream_api,
       r.status_code, r.status_name,
       r.status_message, r.outcome, r.request_bytes, r.response_bytes, r.request_count,
       r.response_count, r.peer_pid, r.peer_uid,
       CASE WHEN r.route_id IS NULL THEN r.upstream ELSE (SELECT t.upstream FROM routes AS t WHERE t.id = r.route_id) END AS upstream,
       COALESCE(r.request_metadata,
                (SELECT CASE WHEN r.grpc_timeout IS NULL THEN s.pairs
                             ELSE replace(s.pairs, '["grpc-timeout", ""]',
                                          '["grpc-timeout", "' || r.grpc_timeout || '"]') END
                   FROM metadata_sets AS s WHERE s.id = r.request_metadata_id)) AS request_metadata,
       COALESCE(r.response_metadata,
                (SELECT s.pairs FROM metadata_sets AS s WHERE s.id = r.response_metadata_id)) AS response_metadata,
       COALESCE(r.trailers,
                (SELECT s.pairs FROM metadata_sets AS s WHERE s.id = r.trailers_id)) AS trailers,
       r.redacted, r.notes, r.format_version, r.pod_sandbox_id, r.container_id, r.image,
       r.pod_name, r.pod_namespace, r.exit_code, r.client_id
FROM call_rows AS r;

CREATE TRIGGER calls_insert INSTEAD OF INSERT ON calls
BEGIN
    INSERT INTO call_rows (id, session_id, conn_id, stream_id, started_at, started_unix, duration_ms,
        service, method, path, client_api, upstream_api, status_code, status_name, status_message,
        outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid,
        upstream, request_metadata, response_metadata, trailers, redacted, notes, format_version,
        pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id)
    VALUES (NEW.id, NEW.session_id, NEW.conn_id, NEW.stream_id, NEW.started_at, NEW.started_unix,
        NEW.duration_ms, NEW.service, NEW.method, NEW.path, NEW.client_api, NEW.upstream_api,
        NEW.status_code, NEW.status_name, NEW.status_message, NEW.outcome, NEW.request_bytes,
        NEW.response_bytes, NEW.request_count, NEW.response_count, NEW.peer_pid, NEW.peer_uid,
        NEW.upstream, NEW.request_metadata, NEW.response_metadata, NEW.trailers,
        COALESCE(NEW.redacted, 0), NEW.notes, NEW.format_version, NEW.pod_sandbox_id,
        NEW.container_id, NEW.image, NEW.pod_name, NEW.pod_namespace, NEW.exit_code, NEW.client_id);
END;

CREATE TRIGGER calls_update INSTEAD OF UPDATE ON calls
BEGIN
    UPDATE call_rows SET id = NEW.id, session_id = NEW.session_id, conn_id = NEW.conn_id,
        stream_id = NEW.stream_id, started_at = NEW.started_at, started_unix = NEW.started_unix,
        duration_ms = NEW.duration_ms, method = NEW.method,
        route_id = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN route_id END,
        service = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN service ELSE NEW.service END,
        path = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN path ELSE NEW.path END,
        client_api = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN client_api ELSE NEW.client_api END,
        upstream_api = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN upstream_api ELSE NEW.upstream_api END,
        upstream = CASE WHEN NEW.service IS OLD.service AND NEW.path IS OLD.path AND NEW.client_api IS OLD.client_api
                             AND NEW.upstream_api IS OLD.upstream_api AND NEW.upstream IS OLD.upstream THEN upstream ELSE NEW.upstream END,
        status_code = NEW.status_code,
        status_name = NEW.status_name, status_message = NEW.status_message, outcome = NEW.outcome,
        request_bytes = NEW.request_bytes, response_bytes = NEW.response_bytes,
        request_count = NEW.request_count, response_count = NEW.response_count,
        peer_pid = NEW.peer_pid, peer_uid = NEW.peer_uid,
        request_metadata = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN request_metadata
                                ELSE NEW.request_metadata END,
        response_metadata = CASE WHEN NEW.response_metadata IS OLD.response_metadata THEN response_metadata
                                 ELSE NEW.response_metadata END,
        trailers = CASE WHEN NEW.trailers IS OLD.trailers THEN trailers ELSE NEW.trailers END,
        request_metadata_id = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN request_metadata_id END,
        grpc_timeout = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN grpc_timeout END,
        response_metadata_id = CASE WHEN NEW.response_metadata IS OLD.response_metadata THEN response_metadata_id END,
        trailers_id = CASE WHEN NEW.trailers IS OLD.trailers THEN trailers_id END,
        redacted = NEW.redacted, notes = NEW.notes, format_version = NEW.format_version,
        pod_sandbox_id = NEW.pod_sandbox_id, container_id = NEW.container_id, image = NEW.image,
        pod_name = NEW.pod_name, pod_namespace = NEW.pod_namespace, exit_code = NEW.exit_code,
        client_id = NEW.client_id
    WHERE id = OLD.id;
END;

-- Dropping the view dropped its DELETE trigger too: the same as 0006's.
CREATE TRIGGER calls_delete INSTEAD OF DELETE ON calls
BEGIN
    DELETE FROM call_rows WHERE id = OLD.id;
END;

-- 0007's, with the service read through the route (new rows keep '' in their own column).
CREATE TRIGGER call_minutes_forget AFTER DELETE ON call_rows
BEGIN
    UPDATE call_durations SET calls = calls - 1
     WHERE service = (CASE WHEN OLD.route_id IS NULL THEN OLD.service ELSE (SELECT service FROM routes WHERE id = OLD.route_id) END) AND method = OLD.method AND duration_ms = OLD.duration_ms;
    DELETE FROM call_durations
     WHERE service = (CASE WHEN OLD.route_id IS NULL THEN OLD.service ELSE (SELECT service FROM routes WHERE id = OLD.route_id) END) AND method = OLD.method AND duration_ms = OLD.duration_ms AND calls <= 0;
    UPDATE call_minutes
       SET calls = calls - 1,
           errors = errors - (OLD.status_code IS NOT 0 OR OLD.outcome <> 'completed'),
           nonzero_exits = nonzero_exits - (OLD.exit_code IS NOT NULL AND OLD.exit_code <> 0),
           timed = timed - (OLD.duration_ms IS NOT NULL),
           duration_ms_sum = duration_ms_sum - COALESCE(OLD.duration_ms, 0),
           request_bytes = request_bytes - OLD.request_bytes,
           response_bytes = response_bytes - OLD.response_bytes,
           max_ms = CASE WHEN OLD.duration_ms >= max_ms THEN (
               SELECT MAX(c.duration_ms) FROM calls AS c
                WHERE c.started_at >= substr(OLD.started_at, 1, 16)
                  AND c.started_at < substr(OLD.started_at, 1, 16) || ':~'
                  AND c.session_id = OLD.session_id AND c.service = (CASE WHEN OLD.route_id IS NULL THEN OLD.service ELSE (SELECT service FROM routes WHERE id = OLD.route_id) END) AND c.method = OLD.method)
               ELSE max_ms END
     WHERE minute = substr(OLD.started_at, 1, 16) AND session_id = OLD.session_id
       AND service = (CASE WHEN OLD.route_id IS NULL THEN OLD.service ELSE (SELECT service FROM routes WHERE id = OLD.route_id) END) AND method = OLD.method;
    DELETE FROM call_minutes
     WHERE minute = substr(OLD.started_at, 1, 16) AND session_id = OLD.session_id
       AND service = (CASE WHEN OLD.route_id IS NULL THEN OLD.service ELSE (SELECT service FROM routes WHERE id = OLD.route_id) END) AND method = OLD.method AND calls <= 0;
END;
