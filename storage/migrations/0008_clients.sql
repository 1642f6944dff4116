-- 0008_clients: who made each call, stored once per client process.
--
-- The relay reads the client's credentials when it accepts a connection (SO_PEERCRED: pid,
-- uid, gid) and, from /proc, its process name (`comm`) and executable. Calls have always
-- kept `peer_pid` and `peer_uid`; the rest would repeat the same text on every row (the
-- kubelet makes thousands of calls a minute from one process), so a client is a row of
-- `clients`, unique on everything it holds, and `calls.client_id` points at it. Any of its
-- columns may be NULL: the executable of another user's process cannot be read without
-- CAP_SYS_PTRACE, and a process gone before the relay looked has no /proc entry.
-- Calls recorded before this version have `client_id` NULL (their pid and uid stay where
-- they were); so do calls the bridge served, whose only client it sees is the relay.
--
-- Since 0006 `calls` is a view over `call_rows`: the column goes on `call_rows`, and the
-- view and its triggers are made again with it (as 0006 made them, plus
-- `client_id` last).

CREATE TABLE clients (
    id INTEGER PRIMARY KEY,
    pid INTEGER,
    uid INTEGER,
    gid INTEGER,
    name TEXT,
    exe TEXT
);

-- One row per distinct client; NULLs compare equal here (a plain UNIQUE would not).
CREATE UNIQUE INDEX clients_identity ON clients (
    ifnull(pid, -1), ifnull(uid, -1), ifnull(gid, -1), ifnull(name, ''), ifnull(exe, '')
);

ALTER TABLE call_rows ADD COLUMN client_id INTEGER REFERENCES clients (id);

DROP TRIGGER calls_insert;
DROP TRIGGER calls_update;
DROP VIEW calls;

CREATE VIEW calls AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id, r.started_at, r.started_unix, r.duration_ms,
       r.service, r.method, r.path, r.client_api, r.upstream_api, r.status_code, r.status_name,
       r.status_message, r.outcome, r.request_bytes, r.response_bytes, r.request_count,
       r.response_count, r.peer_pid, r.peer_uid, r.upstream,
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
        duration_ms = NEW.duration_ms, service = NEW.service, method = NEW.method, path = NEW.path,
        client_api = NEW.client_api, upstream_api = NEW.upstream_api, status_code = NEW.status_code,
        status_name = NEW.status_name, status_message = NEW.status_message, outcome = NEW.outcome,
        request_bytes = NEW.request_bytes, response_bytes = NEW.response_bytes,
        request_count = NEW.request_count, response_count = NEW.response_count,
        peer_pid = NEW.peer_pid, peer_uid = NEW.peer_uid, upstream = NEW.upstream,
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
