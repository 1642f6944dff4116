-- 0011_lean_rows: a call's row and its indexes narrowed where no query loses an index.
--
-- `calls_session` (calls(session_id), about 9 bytes a call and an index entry for the writer
-- on every call) goes: only an explicit `--session N` filters on session_id alone. A
-- selection reads in `started_unix` order along `calls_started_unix`, testing each row's
-- session (and no longer sorts all of them); `stats --session` reads `call_rows` in order. A
-- file a proxy records into holds a session per run, each most of it; on a file of many
-- sessions a small one's reads cost more.
-- New rows store `status_name` NULL when it is the canonical name of `status_code` (`OK`,
-- `NOT_FOUND`...): the `calls` view spells it out again (no index holds status_name); a code
-- gRPC does not define keeps its `CODE_n` text, and rows already in the file keep theirs.
--
-- The view is made again with that column spelt out (its triggers go with it and are
-- made again as 0009 made them); the rollups' delete trigger reads neither column.

DROP INDEX calls_session;

DROP TRIGGER calls_insert;
DROP TRIGGER calls_update;
DROP TRIGGER calls_delete;
DROP VIEW calls;

CREATE VIEW calls AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id, r.started_at, r.started_unix, r.duration_ms,
       CASE WHEN r.route_id IS NULL THEN r.service ELSE (SELECT t.service FROM routes AS t WHERE t.id = r.route_id) END AS service,
       r.method,
       CASE WHEN r.route_id IS NULL THEN r.path ELSE (SELECT t.path FROM routes AS t WHERE t.id = r.route_id) END AS path,
       CASE WHEN r.route_id IS NULL THEN r.client_api ELSE (SELECT t.client_api FROM routes AS t WHERE t.id = r.route_id) END AS client_api,
       CASE WHEN r.route_id IS NULL THEN r.upstream_api ELSE (SELECT t.upstream_api FROM routes AS t WHERE t.id = r.route_id) END AS upstream_api,
       r.status_code,
       COALESCE(r.status_name, CASE r.status_code WHEN 0 THEN 'OK' WHEN 1 THEN 'CANCELLED' WHEN 2 THEN 'UNKNOWN' WHEN 3 THEN 'INVALID_ARGUMENT' WHEN 4 THEN 'DEADLINE_EXCEEDED' WHEN 5 THEN 'NOT_FOUND' WHEN 6 THEN 'ALREADY_EXISTS' WHEN 7 THEN 'PERMISSION_DENIED' WHEN 8 THEN 'RESOURCE_EXHAUSTED' WHEN 9 THEN 'FAILED_PRECONDITION' WHEN 10 THEN 'ABORTED' WHEN 11 THEN 'OUT_OF_RANGE' WHEN 12 THEN 'UNIMPLEMENTED' WHEN 13 THEN 'INTERNAL' WHEN 14 THEN 'UNAVAILABLE' WHEN 15 THEN 'DATA_LOSS' WHEN 16 THEN 'UNAUTHENTICATED' END) AS status_name,
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
