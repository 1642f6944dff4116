-- 0014_timeout_codes: a request's grpc-timeout value stored as a number, not as text.
--
-- grpc-go sends a `grpc-timeout` on every request whose value (the deadline left, such as
-- "1999881u") differs on every call, so 0006 kept it out of the metadata set, in the row:
-- as TEXT, about 8 bytes and a header byte a call (benchmarks/storage.py's 80-pod node).
-- From this version the writer stores it in `call_rows.timeout_code` as value * 8 + the
-- unit's index in "HMSmun" (gRPC's TimeoutValue is at most 8 digits: under 2^30, at most a
-- 4-byte integer; the kubelet's 2-minute deadlines in milliseconds take 3), and
-- `grpc_timeout` only for a value the number would not spell back the same (leading zeros).
-- `calls` rebuilds the same text from either, so every query of `calls.request_metadata`
-- answers as before.
--
-- A unary call's response usually comes with its trailers, so its offset is its duration:
-- from this version the writer leaves `call_rows.response_offset_us` NULL when it equals
-- `duration_us` (2-3 bytes a call less), and `messages` (and every trigger copying a shared
-- shape's offsets) reads COALESCE(response_offset_us, duration_us). No file before this
-- version has a NULL there for a call with a response (its writer always stored the offset).
-- An UPDATE of `calls.duration_ms` first writes the offset out. Both views and their six
-- triggers are made again.
--
-- No row is copied or rewritten: the column is added (rows written before it read it as
-- NULL) and older rows keep their `grpc_timeout` text, which `calls` reads first. Turning
-- those texts into numbers in place took 1.7 s on a million-call file and saved nothing:
-- the space a shorter row frees stays in its page, and new rows go to new pages.

ALTER TABLE call_rows ADD COLUMN timeout_code INTEGER;

DROP TRIGGER calls_insert;
DROP TRIGGER calls_update;
DROP TRIGGER calls_delete;
DROP VIEW calls;
DROP TRIGGER messages_insert;
DROP TRIGGER messages_update;
DROP TRIGGER messages_delete;
DROP VIEW messages;

-- 0012's views and triggers, with the timeout read from either column and the response's
-- offset from the duration when NULL.
CREATE VIEW calls AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id,
       COALESCE(r.started_at, strftime('%Y-%m-%d %H:%M:%S', CAST(round(r.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(r.started_unix * 1000) AS INTEGER) % 1000)) AS started_at,
       r.started_unix, r.duration_us / 1000.0 AS duration_ms,
       t.service, s.method, t.path, t.client_api, t.upstream_api,
       s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes,
       s.request_count, s.response_count, s.peer_pid, s.peer_uid, t.upstream,
       COALESCE(s.request_metadata,
                (SELECT CASE WHEN r.grpc_timeout IS NULL AND r.timeout_code IS NULL THEN m.pairs
                             ELSE replace(m.pairs, '["grpc-timeout", ""]',
                                          '["grpc-timeout", "' || COALESCE(r.grpc_timeout, CAST(r.timeout_code >> 3 AS TEXT) || substr('HMSmun', (r.timeout_code & 7) + 1, 1)) || '"]') END
                   FROM metadata_sets AS m WHERE m.id = s.request_metadata_id)) AS request_metadata,
       COALESCE(s.response_metadata,
                (SELECT m.pairs FROM metadata_sets AS m WHERE m.id = s.response_metadata_id)) AS response_metadata,
       COALESCE(s.trailers,
                (SELECT m.pairs FROM metadata_sets AS m WHERE m.id = s.trailers_id)) AS trailers,
       s.redacted, s.notes, s.format_version, s.pod_sandbox_id, s.container_id, s.image,
       s.pod_name, s.pod_namespace, s.exit_code, s.client_id
FROM call_rows AS r
JOIN call_shapes AS s ON s.id = r.shape_id
JOIN routes AS t ON t.id = s.route_id;

CREATE VIEW messages AS
SELECT r.id AS call_id, CASE m.kind WHEN 0 THEN 'request' WHEN 1 THEN 'response' END AS direction, m.idx,
       COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE COALESCE(r.response_offset_us, r.duration_us) END) / 1000.0
           AS offset_ms,
       m.payload_id, m.compressed
FROM call_rows AS r
JOIN shape_messages AS m ON m.shape_id = r.shape_id;

-- A call inserted through the view: its route and shape found or made (its metadata as text
-- in the shape), and no messages yet (inserting one gives the call a shape of its own).
CREATE TRIGGER calls_insert INSTEAD OF INSERT ON calls
BEGIN
    INSERT INTO routes (service, path, client_api, upstream_api, upstream)
    VALUES (NEW.service, NEW.path, NEW.client_api, NEW.upstream_api, NEW.upstream) ON CONFLICT DO NOTHING;
    INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
    VALUES (NEW.method,
        (SELECT t.id FROM routes AS t WHERE t.service = NEW.service AND t.path = NEW.path AND ifnull(t.client_api, '') = ifnull(NEW.client_api, '') AND ifnull(t.upstream_api, '') = ifnull(NEW.upstream_api, '') AND ifnull(t.upstream, '') = ifnull(NEW.upstream, '')),
        NEW.status_code,
        NEW.status_name,
        NEW.status_message,
        NEW.outcome,
        NEW.request_bytes,
        NEW.response_bytes,
        NEW.request_count,
        NEW.response_count,
        NEW.peer_pid,
        NEW.peer_uid,
        NULL,
        NULL,
        NULL,
        NEW.request_metadata,
        NEW.response_metadata,
        NEW.trailers,
        COALESCE(NEW.redacted, 0),
        NEW.notes,
        NEW.format_version,
        NEW.pod_sandbox_id,
        NEW.container_id,
        NEW.image,
        NEW.pod_name,
        NEW.pod_namespace,
        NEW.exit_code,
        NEW.client_id,
        NULL,
        NULL,
        NULL)
    ON CONFLICT DO NOTHING;
    INSERT INTO call_rows (id, session_id, conn_id, stream_id, started_unix, duration_us, shape_id, started_at)
    VALUES (NEW.id, NEW.session_id, NEW.conn_id, NEW.stream_id, NEW.started_unix,
            CAST(round(NEW.duration_ms * 1000) AS INTEGER),
            (SELECT s.id FROM call_shapes AS s WHERE s.method = NEW.method
         AND s.route_id = (SELECT t.id FROM routes AS t WHERE t.service = NEW.service AND t.path = NEW.path AND ifnull(t.client_api, '') = ifnull(NEW.client_api, '') AND ifnull(t.upstream_api, '') = ifnull(NEW.upstream_api, '') AND ifnull(t.upstream, '') = ifnull(NEW.upstream, ''))
         AND ifnull(s.status_code, x'') = ifnull(NEW.status_code, x'')
         AND ifnull(s.status_name, x'') = ifnull(NEW.status_name, x'')
         AND ifnull(s.status_message, x'') = ifnull(NEW.status_message, x'')
         AND s.outcome = NEW.outcome
         AND s.request_bytes = NEW.request_bytes
         AND s.response_bytes = NEW.response_bytes
         AND s.request_count = NEW.request_count
         AND s.response_count = NEW.response_count
         AND ifnull(s.peer_pid, x'') = ifnull(NEW.peer_pid, x'')
         AND ifnull(s.peer_uid, x'') = ifnull(NEW.peer_uid, x'')
         AND ifnull(s.request_metadata_id, x'') = ifnull(NULL, x'')
         AND ifnull(s.response_metadata_id, x'') = ifnull(NULL, x'')
         AND ifnull(s.trailers_id, x'') = ifnull(NULL, x'')
         AND ifnull(s.request_metadata, x'') = ifnull(NEW.request_metadata, x'')
         AND ifnull(s.response_metadata, x'') = ifnull(NEW.response_metadata, x'')
         AND ifnull(s.trailers, x'') = ifnull(NEW.trailers, x'')
         AND s.redacted = COALESCE(NEW.redacted, 0)
         AND ifnull(s.notes, x'') = ifnull(NEW.notes, x'')
         AND s.format_version = NEW.format_version
         AND ifnull(s.pod_sandbox_id, x'') = ifnull(NEW.pod_sandbox_id, x'')
         AND ifnull(s.container_id, x'') = ifnull(NEW.container_id, x'')
         AND ifnull(s.image, x'') = ifnull(NEW.image, x'')
         AND ifnull(s.pod_name, x'') = ifnull(NEW.pod_name, x'')
         AND ifnull(s.pod_namespace, x'') = ifnull(NEW.pod_namespace, x'')
         AND ifnull(s.exit_code, x'') = ifnull(NEW.exit_code, x'')
         AND ifnull(s.client_id, x'') = ifnull(NEW.client_id, x'')
         AND ifnull(s.request_payload, x'') = ifnull(NULL, x'')
         AND ifnull(s.response_payload, x'') = ifnull(NULL, x'')
         AND ifnull(s.call_id, x'') = ifnull(NULL, x'')),
            CASE WHEN NEW.started_at IS strftime('%Y-%m-%d %H:%M:%S', CAST(round(NEW.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(NEW.started_unix * 1000) AS INTEGER) % 1000) THEN NULL ELSE NEW.started_at END);
END;

-- A call changed through the view gets a shape of its own first (the calls sharing its
-- shape keep theirs), which is then changed.
CREATE TRIGGER calls_update INSTEAD OF UPDATE ON calls
BEGIN
    INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
    SELECT s.method, s.route_id, s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes, s.request_count, s.response_count, s.peer_pid, s.peer_uid, s.request_metadata_id, s.response_metadata_id, s.trailers_id, s.request_metadata, s.response_metadata, s.trailers, s.redacted, s.notes, s.format_version, s.pod_sandbox_id, s.container_id, s.image, s.pod_name, s.pod_namespace, s.exit_code, s.client_id, s.request_payload, s.response_payload, NEW.id
      FROM call_rows AS r JOIN call_shapes AS s ON s.id = r.shape_id WHERE r.id = NEW.id AND s.call_id IS NOT NEW.id;
    INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE COALESCE(r.response_offset_us, r.duration_us) END),
           m.payload_id, m.compressed
      FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id JOIN call_shapes AS o ON o.call_id = NEW.id
     WHERE r.id = NEW.id AND r.shape_id <> o.id;
    UPDATE call_rows SET shape_id = (SELECT id FROM call_shapes WHERE call_id = NEW.id) WHERE id = NEW.id;
    INSERT INTO routes (service, path, client_api, upstream_api, upstream)
    VALUES (NEW.service, NEW.path, NEW.client_api, NEW.upstream_api, NEW.upstream) ON CONFLICT DO NOTHING;
    UPDATE call_shapes SET method = NEW.method, route_id = (SELECT t.id FROM routes AS t WHERE t.service = NEW.service AND t.path = NEW.path AND ifnull(t.client_api, '') = ifnull(NEW.client_api, '') AND ifnull(t.upstream_api, '') = ifnull(NEW.upstream_api, '') AND ifnull(t.upstream, '') = ifnull(NEW.upstream, '')),
        status_code = NEW.status_code, status_name = NEW.status_name, status_message = NEW.status_message,
        outcome = NEW.outcome, request_bytes = NEW.request_bytes, response_bytes = NEW.response_bytes,
        request_count = NEW.request_count, response_count = NEW.response_count,
        peer_pid = NEW.peer_pid, peer_uid = NEW.peer_uid,
        request_metadata = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN request_metadata
                                ELSE NEW.request_metadata END,
        response_metadata = CASE WHEN NEW.response_metadata IS OLD.response_metadata THEN response_metadata
                                 ELSE NEW.response_metadata END,
        trailers = CASE WHEN NEW.trailers IS OLD.trailers THEN trailers ELSE NEW.trailers END,
        request_metadata_id = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN request_metadata_id END,
        response_metadata_id = CASE WHEN NEW.response_metadata IS OLD.response_metadata THEN response_metadata_id END,
        trailers_id = CASE WHEN NEW.trailers IS OLD.trailers THEN trailers_id END,
        redacted = NEW.redacted, notes = NEW.notes, format_version = NEW.format_version,
        pod_sandbox_id = NEW.pod_sandbox_id, container_id = NEW.container_id, image = NEW.image,
        pod_name = NEW.pod_name, pod_namespace = NEW.pod_namespace, exit_code = NEW.exit_code,
        client_id = NEW.client_id
    WHERE call_id = OLD.id;
    UPDATE call_rows SET id = NEW.id, session_id = NEW.session_id, conn_id = NEW.conn_id,
        stream_id = NEW.stream_id, started_unix = NEW.started_unix,
        duration_us = CAST(round(NEW.duration_ms * 1000) AS INTEGER),
        response_offset_us = COALESCE(response_offset_us, duration_us),
        grpc_timeout = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN grpc_timeout END,
        timeout_code = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN timeout_code END,
        started_at = CASE WHEN NEW.started_at IS strftime('%Y-%m-%d %H:%M:%S', CAST(round(NEW.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(NEW.started_unix * 1000) AS INTEGER) % 1000) THEN NULL ELSE NEW.started_at END
    WHERE id = OLD.id;
END;

CREATE TRIGGER calls_delete INSTEAD OF DELETE ON calls
BEGIN
    DELETE FROM call_rows WHERE id = OLD.id;
END;

CREATE TRIGGER messages_insert INSTEAD OF INSERT ON messages
BEGIN
    INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
    SELECT s.method, s.route_id, s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes, s.request_count, s.response_count, s.peer_pid, s.peer_uid, s.request_metadata_id, s.response_metadata_id, s.trailers_id, s.request_metadata, s.response_metadata, s.trailers, s.redacted, s.notes, s.format_version, s.pod_sandbox_id, s.container_id, s.image, s.pod_name, s.pod_namespace, s.exit_code, s.client_id, s.request_payload, s.response_payload, NEW.call_id
      FROM call_rows AS r JOIN call_shapes AS s ON s.id = r.shape_id WHERE r.id = NEW.call_id AND s.call_id IS NOT NEW.call_id;
    INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE COALESCE(r.response_offset_us, r.duration_us) END),
           m.payload_id, m.compressed
      FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id JOIN call_shapes AS o ON o.call_id = NEW.call_id
     WHERE r.id = NEW.call_id AND r.shape_id <> o.id;
    UPDATE call_rows SET shape_id = (SELECT id FROM call_shapes WHERE call_id = NEW.call_id) WHERE id = NEW.call_id;
    INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
    VALUES ((SELECT shape_id FROM call_rows WHERE id = NEW.call_id),
            CASE NEW.direction WHEN 'request' THEN 0 WHEN 'response' THEN 1 END, NEW.idx,
            CAST(round(NEW.offset_ms * 1000) AS INTEGER), NEW.payload_id, COALESCE(NEW.compressed, 0));
END;

-- (A message cannot move to another call through the view: call_id is left as it was.)
CREATE TRIGGER messages_update INSTEAD OF UPDATE ON messages
BEGIN
    INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
    SELECT s.method, s.route_id, s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes, s.request_count, s.response_count, s.peer_pid, s.peer_uid, s.request_metadata_id, s.response_metadata_id, s.trailers_id, s.request_metadata, s.response_metadata, s.trailers, s.redacted, s.notes, s.format_version, s.pod_sandbox_id, s.container_id, s.image, s.pod_name, s.pod_namespace, s.exit_code, s.client_id, s.request_payload, s.response_payload, OLD.call_id
      FROM call_rows AS r JOIN call_shapes AS s ON s.id = r.shape_id WHERE r.id = OLD.call_id AND s.call_id IS NOT OLD.call_id;
    INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE COALESCE(r.response_offset_us, r.duration_us) END),
           m.payload_id, m.compressed
      FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id JOIN call_shapes AS o ON o.call_id = OLD.call_id
     WHERE r.id = OLD.call_id AND r.shape_id <> o.id;
    UPDATE call_rows SET shape_id = (SELECT id FROM call_shapes WHERE call_id = OLD.call_id) WHERE id = OLD.call_id;
    UPDATE shape_messages SET
        kind = CASE NEW.direction WHEN 'request' THEN 0 WHEN 'response' THEN 1 END, idx = NEW.idx,
        offset_us = CAST(round(NEW.offset_ms * 1000) AS INTEGER), payload_id = NEW.payload_id,
        compressed = NEW.compressed
    WHERE shape_id = (SELECT shape_id FROM call_rows WHERE id = OLD.call_id)
      AND kind = (CASE OLD.direction WHEN 'request' THEN 0 ELSE 1 END) AND idx = OLD.idx;
END;

CREATE TRIGGER messages_delete INSTEAD OF DELETE ON messages
BEGIN
    INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
    SELECT s.method, s.route_id, s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes, s.request_count, s.response_count, s.peer_pid, s.peer_uid, s.request_metadata_id, s.response_metadata_id, s.trailers_id, s.request_metadata, s.response_metadata, s.trailers, s.redacted, s.notes, s.format_version, s.pod_sandbox_id, s.container_id, s.image, s.pod_name, s.pod_namespace, s.exit_code, s.client_id, s.request_payload, s.response_payload, OLD.call_id
      FROM call_rows AS r JOIN call_shapes AS s ON s.id = r.shape_id WHERE r.id = OLD.call_id AND s.call_id IS NOT OLD.call_id;
    INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE COALESCE(r.response_offset_us, r.duration_us) END),
           m.payload_id, m.compressed
      FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id JOIN call_shapes AS o ON o.call_id = OLD.call_id
     WHERE r.id = OLD.call_id AND r.shape_id <> o.id;
    UPDATE call_rows SET shape_id = (SELECT id FROM call_shapes WHERE call_id = OLD.call_id) WHERE id = OLD.call_id;
    DELETE FROM shape_messages
    WHERE shape_id = (SELECT shape_id FROM call_rows WHERE id = OLD.call_id)
      AND kind = (CASE OLD.direction WHEN 'request' THEN 0 ELSE 1 END) AND idx = OLD.idx;
END;
