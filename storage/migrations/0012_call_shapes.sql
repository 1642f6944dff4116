-- 0012_call_shapes: what repeats from one call to the next stored once, as the call's shape.
--
-- Almost everything in a kubelet's call repeats exactly from one call of that method and
-- object to the next: method, route, status, outcome, byte counts, metadata sets, client,
-- the ids of its pod, container and image, the exit code, and the bodies of its one request
-- and one response. Only the start, the duration, the grpc-timeout value, the connection
-- and stream, the session and the two messages' offsets change. A call's row had all of it
-- (40 columns, five indexes and two message rows with their index entry: about 380 of the
-- 508 bytes a call cost an 80-pod node, benchmarks/storage.py). From this version:
--
-- - `call_shapes` holds each distinct combination once (UNIQUE `shapes_identity`, NULLs
--   compared equal as in `routes_identity`: x'' stands for NULL, which no column holds as a
--   value), with `request_payload`/`response_payload` (payload id * 2 + compressed) naming
--   its one request and one response body; the users' filters (container, sandbox, pod,
--   method) search its small indexes.
-- - `shape_messages` holds a shape's messages. A call with at most one request and one
--   response (idx 0) shares its shape, and the messages' offsets are in its own row
--   (`offset_us` NULL: take `call_rows.request_offset_us` / `response_offset_us`); a call
--   with more messages (a stream) has a shape of its own (`call_shapes.call_id` = that call)
--   whose messages carry their offsets.
-- - `call_rows` is thin: the times, ids and offsets, and `shape_id`. `duration_us` holds
--   the duration in whole microseconds (the writer has always stored `duration_ms` rounded to
--   3 places: `duration_us / 1000.0` is the very float stored before). `started_at` is NULL
--   unless the row's text differs from what the view derives from `started_unix` (the same
--   text model.clock.utc_text writes): only rows from files older than this version can.
--   There is no index on started_at any more (about 36 B a call): filter on `started_unix`.
--
-- `calls` and `messages` are plain INNER JOIN views with the columns and values they had,
-- which SQLite flattens into each query using them (a UNION ALL view, or LEFT JOINs with
-- COALESCE, would be read whole or scanned). INSTEAD OF triggers keep both writable: a call
-- inserted through `calls` finds or makes its shape (its metadata kept as text in the shape),
-- and a change to one call's messages or columns first gives that call a shape of its own,
-- so the calls sharing its old shape are left as they were.
--
-- The rows already in the file are copied into the new layout: routes for the rows that had
-- none, shapes for all, messages of shared shapes by payload, of own shapes with offsets.

CREATE TABLE call_shapes (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,
    route_id INTEGER NOT NULL REFERENCES routes (id),
    status_code INTEGER,
    status_name TEXT,
    status_message TEXT,
    outcome TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    request_count INTEGER NOT NULL,
    response_count INTEGER NOT NULL,
    peer_pid INTEGER,
    peer_uid INTEGER,
    request_metadata_id INTEGER REFERENCES metadata_sets (id),
    response_metadata_id INTEGER REFERENCES metadata_sets (id),
    trailers_id INTEGER REFERENCES metadata_sets (id),
    request_metadata TEXT,
    response_metadata TEXT,
    trailers TEXT,
    redacted INTEGER NOT NULL DEFAULT 0,
    notes TEXT,
    format_version INTEGER NOT NULL,
    pod_sandbox_id TEXT,
    container_id TEXT,
    image TEXT,
    pod_name TEXT,
    pod_namespace TEXT,
    exit_code INTEGER,
    client_id INTEGER REFERENCES clients (id),
    request_payload INTEGER,
    response_payload INTEGER,
    call_id INTEGER
);

CREATE UNIQUE INDEX shapes_identity ON call_shapes (
    method, route_id, ifnull(status_code, x''), ifnull(status_name, x''),
    ifnull(status_message, x''), outcome, request_bytes, response_bytes, request_count,
    response_count, ifnull(peer_pid, x''), ifnull(peer_uid, x''), ifnull(request_metadata_id, x''),
    ifnull(response_metadata_id, x''), ifnull(trailers_id, x''), ifnull(request_metadata, x''),
    ifnull(response_metadata, x''), ifnull(trailers, x''), redacted, ifnull(notes, x''),
    format_version, ifnull(pod_sandbox_id, x''), ifnull(container_id, x''), ifnull(image, x''),
    ifnull(pod_name, x''), ifnull(pod_namespace, x''), ifnull(exit_code, x''),
    ifnull(client_id, x''), ifnull(request_payload, x''), ifnull(response_payload, x''),
    ifnull(call_id, x'')
);

CREATE TABLE shape_messages (
    shape_id INTEGER NOT NULL REFERENCES call_shapes (id),
    kind INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    offset_us INTEGER,
    payload_id INTEGER NOT NULL REFERENCES payloads (id),
    compressed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (shape_id, kind, idx)
) WITHOUT ROWID;

-- The copy. Rows written before schema 9 get their route.
INSERT INTO routes (service, path, client_api, upstream_api, upstream)
SELECT service, path, client_api, upstream_api, upstream FROM call_rows WHERE route_id IS NULL
ON CONFLICT DO NOTHING;

CREATE TEMP TABLE shape_of AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id, r.started_unix,
       CAST(round(r.duration_ms * 1000) AS INTEGER) AS duration_us, r.grpc_timeout,
       CASE WHEN r.started_at IS strftime('%Y-%m-%d %H:%M:%S', CAST(round(r.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(r.started_unix * 1000) AS INTEGER) % 1000) THEN NULL ELSE r.started_at END AS started_at,
       CASE WHEN r.own THEN NULL ELSE rq.offset_us END AS request_offset_us,
       CASE WHEN r.own THEN NULL ELSE rs.offset_us END AS response_offset_us,
       r.method, COALESCE(r.route_id, (SELECT t.id FROM routes AS t WHERE t.service = r.service AND t.path = r.path AND ifnull(t.client_api, '') = ifnull(r.client_api, '') AND ifnull(t.upstream_api, '') = ifnull(r.upstream_api, '') AND ifnull(t.upstream, '') = ifnull(r.upstream, ''))) AS route_id,
       r.status_code, r.status_name, r.status_message, r.outcome, r.request_bytes, r.response_bytes,
       r.request_count, r.response_count, r.peer_pid, r.peer_uid,
       r.request_metadata_id, r.response_metadata_id, r.trailers_id,
       r.request_metadata, r.response_metadata, r.trailers, r.redacted, r.notes, r.format_version,
       r.pod_sandbox_id, r.container_id, r.image, r.pod_name, r.pod_namespace, r.exit_code, r.client_id,
       CASE WHEN r.own THEN NULL ELSE rq.payload_id * 2 + rq.compressed END AS request_payload,
       CASE WHEN r.own THEN NULL ELSE rs.payload_id * 2 + rs.compressed END AS response_payload,
       CASE WHEN r.own THEN r.id END AS call_id
FROM (SELECT c.*, EXISTS (SELECT 1 FROM message_rows AS x WHERE x.call_id = c.id AND x.idx <> 0) AS own
        FROM call_rows AS c) AS r
LEFT JOIN message_rows AS rq ON rq.call_id = r.id AND rq.kind = 0 AND rq.idx = 0
LEFT JOIN message_rows AS rs ON rs.call_id = r.id AND rs.kind = 1 AND rs.idx = 0;

INSERT INTO call_shapes (method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id)
SELECT method, route_id, status_code, status_name, status_message, outcome, request_bytes, response_bytes, request_count, response_count, peer_pid, peer_uid, request_metadata_id, response_metadata_id, trailers_id, request_metadata, response_metadata, trailers, redacted, notes, format_version, pod_sandbox_id, container_id, image, pod_name, pod_namespace, exit_code, client_id, request_payload, response_payload, call_id FROM shape_of WHERE 1 ORDER BY id
ON CONFLICT DO NOTHING;

INSERT INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed)
SELECT id, 0, 0, NULL, request_payload >> 1, request_payload & 1 FROM call_shapes
 WHERE call_id IS NULL AND request_payload IS NOT NULL
UNION ALL
SELECT id, 1, 0, NULL, response_payload >> 1, response_payload & 1 FROM call_shapes
 WHERE call_id IS NULL AND response_payload IS NOT NULL
UNION ALL
SELECT s.id, m.kind, m.idx, m.offset_us, m.payload_id, m.compressed
  FROM call_shapes AS s JOIN message_rows AS m ON m.call_id = s.call_id
 WHERE s.call_id IS NOT NULL;

DROP TRIGGER calls_insert;
DROP TRIGGER calls_update;
DROP TRIGGER calls_delete;
DROP VIEW calls;
DROP TRIGGER call_minutes_forget;
DROP TRIGGER messages_insert;
DROP TRIGGER messages_update;
DROP TRIGGER messages_delete;
DROP VIEW messages;
DROP TABLE message_rows;
DROP TABLE call_rows;

CREATE TABLE call_rows (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    conn_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    started_unix REAL NOT NULL,
    duration_us INTEGER,
    shape_id INTEGER NOT NULL REFERENCES call_shapes (id),
    request_offset_us INTEGER,
    response_offset_us INTEGER,
    grpc_timeout TEXT,
    started_at TEXT
);

INSERT INTO call_rows (id, session_id, conn_id, stream_id, started_unix, duration_us, shape_id,
                       request_offset_us, response_offset_us, grpc_timeout, started_at)
SELECT o.id, o.session_id, o.conn_id, o.stream_id, o.started_unix, o.duration_us,
       (SELECT s.id FROM call_shapes AS s WHERE s.method = o.method AND s.route_id = o.route_id
           AND ifnull(s.status_code, x'') = ifnull(o.status_code, x'')
           AND ifnull(s.status_name, x'') = ifnull(o.status_name, x'')
           AND ifnull(s.status_message, x'') = ifnull(o.status_message, x'')
           AND s.outcome = o.outcome
           AND s.request_bytes = o.request_bytes
           AND s.response_bytes = o.response_bytes
           AND s.request_count = o.request_count
           AND s.response_count = o.response_count
           AND ifnull(s.peer_pid, x'') = ifnull(o.peer_pid, x'')
           AND ifnull(s.peer_uid, x'') = ifnull(o.peer_uid, x'')
           AND ifnull(s.request_metadata_id, x'') = ifnull(o.request_metadata_id, x'')
           AND ifnull(s.response_metadata_id, x'') = ifnull(o.response_metadata_id, x'')
           AND ifnull(s.trailers_id, x'') = ifnull(o.trailers_id, x'')
           AND ifnull(s.request_metadata, x'') = ifnull(o.request_metadata, x'')
           AND ifnull(s.response_metadata, x'') = ifnull(o.response_metadata, x'')
           AND ifnull(s.trailers, x'') = ifnull(o.trailers, x'')
           AND s.redacted = o.redacted
           AND ifnull(s.notes, x'') = ifnull(o.notes, x'')
           AND s.format_version = o.format_version
           AND ifnull(s.pod_sandbox_id, x'') = ifnull(o.pod_sandbox_id, x'')
           AND ifnull(s.container_id, x'') = ifnull(o.container_id, x'')
           AND ifnull(s.image, x'') = ifnull(o.image, x'')
           AND ifnull(s.pod_name, x'') = ifnull(o.pod_name, x'')
           AND ifnull(s.pod_namespace, x'') = ifnull(o.pod_namespace, x'')
           AND ifnull(s.exit_code, x'') = ifnull(o.exit_code, x'')
           AND ifnull(s.client_id, x'') = ifnull(o.client_id, x'')
           AND ifnull(s.request_payload, x'') = ifnull(o.request_payload, x'')
           AND ifnull(s.response_payload, x'') = ifnull(o.response_payload, x'')
           AND ifnull(s.call_id, x'') = ifnull(o.call_id, x'')),
       o.request_offset_us, o.response_offset_us, o.grpc_timeout, o.started_at
FROM shape_of AS o ORDER BY o.id;

DROP TABLE temp.shape_of;

CREATE INDEX calls_started_unix ON call_rows (started_unix);
CREATE INDEX calls_shape ON call_rows (shape_id);
CREATE INDEX shape_messages_payload ON shape_messages (payload_id);
CREATE INDEX shapes_method ON call_shapes (method);
CREATE INDEX shapes_container_id ON call_shapes (container_id) WHERE container_id IS NOT NULL;
CREATE INDEX shapes_pod_sandbox_id ON call_shapes (pod_sandbox_id) WHERE pod_sandbox_id IS NOT NULL;
CREATE INDEX shapes_pod_name ON call_shapes (pod_namespace, pod_name) WHERE pod_name IS NOT NULL;
CREATE INDEX shapes_call ON call_shapes (call_id) WHERE call_id IS NOT NULL;
-- The failed calls' shapes (the `errors` and `problems` views' conditions, as calls_failed
-- was on call_rows): those views read these few shapes, then their calls through calls_shape.
CREATE INDEX shapes_failed ON call_shapes (id) WHERE status_code IS NOT 0 OR outcome <> 'completed';
CREATE INDEX shapes_problems ON call_shapes (id)
    WHERE (status_code IS NOT 0 OR outcome <> 'completed') OR (exit_code IS NOT NULL AND exit_code <> 0);

CREATE VIEW calls AS
SELECT r.id, r.session_id, r.conn_id, r.stream_id,
       COALESCE(r.started_at, strftime('%Y-%m-%d %H:%M:%S', CAST(round(r.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(r.started_unix * 1000) AS INTEGER) % 1000)) AS started_at,
       r.started_unix, r.duration_us / 1000.0 AS duration_ms,
       t.service, s.method, t.path, t.client_api, t.upstream_api,
       s.status_code, s.status_name, s.status_message, s.outcome, s.request_bytes, s.response_bytes,
       s.request_count, s.response_count, s.peer_pid, s.peer_uid, t.upstream,
       COALESCE(s.request_metadata,
                (SELECT CASE WHEN r.grpc_timeout IS NULL THEN m.pairs
                             ELSE replace(m.pairs, '["grpc-timeout", ""]',
                                          '["grpc-timeout", "' || r.grpc_timeout || '"]') END
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
       COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE r.response_offset_us END) / 1000.0
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
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE r.response_offset_us END),
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
        grpc_timeout = CASE WHEN NEW.request_metadata IS OLD.request_metadata THEN grpc_timeout END,
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
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE r.response_offset_us END),
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
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE r.response_offset_us END),
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
    SELECT o.id, m.kind, m.idx, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us ELSE r.response_offset_us END),
           m.payload_id, m.compressed
      FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id JOIN call_shapes AS o ON o.call_id = OLD.call_id
     WHERE r.id = OLD.call_id AND r.shape_id <> o.id;
    UPDATE call_rows SET shape_id = (SELECT id FROM call_shapes WHERE call_id = OLD.call_id) WHERE id = OLD.call_id;
    DELETE FROM shape_messages
    WHERE shape_id = (SELECT shape_id FROM call_rows WHERE id = OLD.call_id)
      AND kind = (CASE OLD.direction WHEN 'request' THEN 0 ELSE 1 END) AND idx = OLD.idx;
END;

-- 0009's, with what a call's row no longer holds read from its shape and route, and its
-- minute from started_unix (the minute's calls found through calls_started_unix).
CREATE TRIGGER call_minutes_forget AFTER DELETE ON call_rows
BEGIN
    UPDATE call_durations SET calls = calls - 1
     WHERE service = (SELECT t.service FROM call_shapes AS s JOIN routes AS t ON t.id = s.route_id WHERE s.id = OLD.shape_id)
       AND method = (SELECT method FROM call_shapes WHERE id = OLD.shape_id) AND duration_ms = OLD.duration_us / 1000.0;
    DELETE FROM call_durations
     WHERE service = (SELECT t.service FROM call_shapes AS s JOIN routes AS t ON t.id = s.route_id WHERE s.id = OLD.shape_id)
       AND method = (SELECT method FROM call_shapes WHERE id = OLD.shape_id) AND duration_ms = OLD.duration_us / 1000.0
       AND calls <= 0;
    UPDATE call_minutes
       SET calls = calls - 1,
           errors = errors - (SELECT s.status_code IS NOT 0 OR s.outcome <> 'completed' FROM call_shapes AS s WHERE s.id = OLD.shape_id),
           nonzero_exits = nonzero_exits - (SELECT s.exit_code IS NOT NULL AND s.exit_code <> 0 FROM call_shapes AS s WHERE s.id = OLD.shape_id),
           timed = timed - (OLD.duration_us IS NOT NULL),
           duration_ms_sum = duration_ms_sum - COALESCE(OLD.duration_us / 1000.0, 0),
           request_bytes = request_bytes - (SELECT request_bytes FROM call_shapes WHERE id = OLD.shape_id),
           response_bytes = response_bytes - (SELECT response_bytes FROM call_shapes WHERE id = OLD.shape_id),
           max_ms = CASE WHEN OLD.duration_us / 1000.0 >= max_ms THEN (
               SELECT MAX(c.duration_ms) FROM calls AS c
                WHERE c.started_unix >= CAST(strftime('%s', minute) AS INTEGER) - 0.001
                  AND c.started_unix < CAST(strftime('%s', minute) AS INTEGER) + 60.001
                  AND substr(c.started_at, 1, 16) = minute
                  AND c.session_id = OLD.session_id AND c.service = call_minutes.service AND c.method = call_minutes.method)
               ELSE max_ms END
     WHERE minute = substr(COALESCE(OLD.started_at, strftime('%Y-%m-%d %H:%M:%S', CAST(round(OLD.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(OLD.started_unix * 1000) AS INTEGER) % 1000)), 1, 16) AND session_id = OLD.session_id
       AND service = (SELECT t.service FROM call_shapes AS s JOIN routes AS t ON t.id = s.route_id WHERE s.id = OLD.shape_id)
       AND method = (SELECT method FROM call_shapes WHERE id = OLD.shape_id);
    DELETE FROM call_minutes
     WHERE minute = substr(COALESCE(OLD.started_at, strftime('%Y-%m-%d %H:%M:%S', CAST(round(OLD.started_unix * 1000) AS INTEGER) / 1000, 'unixepoch') || printf('.%03d', CAST(round(OLD.started_unix * 1000) AS INTEGER) % 1000)), 1, 16) AND session_id = OLD.session_id
       AND service = (SELECT t.service FROM call_shapes AS s JOIN routes AS t ON t.id = s.route_id WHERE s.id = OLD.shape_id)
       AND method = (SELECT method FROM call_shapes WHERE id = OLD.shape_id) AND calls <= 0;
END;
