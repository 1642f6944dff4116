-- 0006_stored_once: metadata sets stored once, bodies stored as deltas.
--
-- Request and response metadata and trailers repeat the same text on almost every call
-- (about 205 of a row's 442 bytes). From this version each distinct set is one row of
-- `metadata_sets` (keyed by the SHA-256 of its text), and a call's row points at its three
-- sets. grpc-go sends a `grpc-timeout` whose value differs on every call: a set is stored
-- with that one value blanked (`["grpc-timeout", ""]`) and the call's row keeps the value
-- (`grpc_timeout`), so the set is still shared; reading puts it back, giving the text as
-- before, byte for byte.
--
-- The table of call rows is now `call_rows`; `calls` is a view over it with the same
-- columns in the same order, so every query written for `calls` (the views, the named
-- queries, a user's own SQL) reads the same. The rows already in the file keep their
-- metadata text in the columns they had (nothing is rewritten: a large file migrates at
-- once); new rows leave them NULL and set the `*_id` columns instead. INSTEAD OF triggers
-- keep `calls` writable for hand edits (DELETE FROM calls WHERE ...) as it was.
--
-- legacy_alter_table: renaming the table must not rewrite the views that name `calls`
-- (ours are re-created anyway; a user's own views would otherwise be pointed at
-- `call_rows`, which lacks the metadata text, instead of at the new view).
--
-- Bodies: a response body that resembles the last stored body of its method (its
-- "keyframe", whose bytes are stored as they are) is stored as a zstandard frame
-- compressed with those bytes as the dictionary: `payloads.data` is NULL, `delta` holds the
-- frame, `base_id` the keyframe. A keyframe is never itself a delta, so any body decodes
-- with at most one dictionary.

PRAGMA legacy_alter_table = ON;

CREATE TABLE metadata_sets (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    pairs TEXT NOT NULL
);

ALTER TABLE calls RENAME TO call_rows;
ALTER TABLE call_rows ADD COLUMN request_metadata_id INTEGER REFERENCES metadata_sets(id);
ALTER TABLE call_rows ADD COLUMN response_metadata_id INTEGER REFERENCES metadata_sets(id);
ALTER TABLE call_rows ADD COLUMN trailers_id INTEGER REFERENCES metadata_sets(id);
ALTER TABLE call_rows ADD COLUMN grpc_timeout TEXT;

ALTER TABLE payloads ADD COLUMN delta BLOB;
ALTER TABLE payloads ADD COLUMN base_id INTEGER REFERENCES payloads(id);
CREATE INDEX payloads_base ON payloads(base_id) WHERE base_id IS NOT NULL;

PRAGMA legacy_alter_table = OFF;

-- Scalar subqueries rather than joins: the view stays a one-table SELECT, which SQLite
-- flattens into the query using it, so `WHERE method = ...` and the like use call_rows'
-- indexes, and a set is only looked up when its column is read.
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
       r.pod_name, r.pod_namespace, r.exit_code
FROM call_rows AS r;

-- Hand edits of `calls` go to call_rows; metadata written through the view is kept as text
-- in the row (it takes precedence over the row's sets).
CREATE TRIGGER calls_insert INSTEAD OF INSERT ON calls
BEGIN
    INSERT INTO call_rows (id, session_id, conn_id, stream_id, started_at, started_unix, duration_ms,
        service, method, path, client_api, upstream_api, status_code, status_name, status_message,
        outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid,
        upstream, request_metadata, response_metadata, trailers, redacted, notes, format_version,
        pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code)
    VALUES (NEW.id, NEW.session_id, NEW.conn_id, NEW.stream_id, NEW.started_at, NEW.started_unix,
        NEW.duration_ms, NEW.service, NEW.method, NEW.path, NEW.client_api, NEW.upstream_api,
        NEW.status_code, NEW.status_name, NEW.status_message, NEW.outcome, NEW.request_bytes,
        NEW.response_bytes, NEW.request_count, NEW.response_count, NEW.peer_pid, NEW.peer_uid,
        NEW.upstream, NEW.request_metadata, NEW.response_metadata, NEW.trailers,
        COALESCE(NEW.redacted, 0), NEW.notes, NEW.format_version, NEW.pod_sandbox_id,
        NEW.container_id, NEW.image, NEW.pod_name, NEW.pod_namespace, NEW.exit_code);
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
        pod_name = NEW.pod_name, pod_namespace = NEW.pod_namespace, exit_code = NEW.exit_code
    WHERE id = OLD.id;
END;

CREATE TRIGGER calls_delete INSTEAD OF DELETE ON calls
BEGIN
    DELETE FROM call_rows WHERE id = OLD.id;
END;
