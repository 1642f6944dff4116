-- 0010_message_rows: each message's row narrowed, behind a `messages` view with the same columns.
--
-- A call's two messages took about 101 bytes of the 657 a call cost (benchmarks/storage.py,
-- an 80-pod node's hour): every row and its `messages_payload` index entry spelled out
-- `request` or `response`, and a response's offset was an 8-byte float. From this version
-- the rows are `message_rows`: `kind` is 0 for a request and 1 for a response (SQLite stores
-- both in the row header alone) and `offset_us` the offset in whole microseconds (the writer
-- has always stored `offset_ms` rounded to 3 places, so nothing is lost: `offset_us / 1000.0`
-- is the very float stored before). `messages` is a view over it giving the columns and
-- values of the table it replaces, so every query of `messages` (the views, the named
-- queries, a user's own SQL) answers as before; being a one-table view SQLite flattens it
-- into the query using it, so `m.call_id = c.id` still searches the primary key and
-- `payload_id = ?` the index. INSTEAD OF triggers keep it writable (retention and snapshot
-- delete through it).
--
-- Unlike 0006 and 0009 this one copies the rows already in the file (a view over the old
-- table and the new one, a UNION ALL, could not be flattened into a join: each join on
-- `messages` would have read all of it). A user's own view naming `messages` reads the new
-- view, as it read the table.

CREATE TABLE message_rows (
    call_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    offset_us INTEGER NOT NULL,
    payload_id INTEGER NOT NULL REFERENCES payloads (id),
    compressed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (call_id, kind, idx)
) WITHOUT ROWID;

INSERT INTO message_rows (call_id, kind, idx, offset_us, payload_id, compressed)
SELECT call_id, CASE direction WHEN 'request' THEN 0 WHEN 'response' THEN 1 END, idx,
       CAST(round(offset_ms * 1000) AS INTEGER), payload_id, compressed
FROM messages;

DROP TABLE messages;
CREATE INDEX messages_payload ON message_rows (payload_id);

CREATE VIEW messages AS
SELECT call_id, CASE kind WHEN 0 THEN 'request' WHEN 1 THEN 'response' END AS direction, idx,
       offset_us / 1000.0 AS offset_ms, payload_id, compressed
FROM message_rows;

CREATE TRIGGER messages_insert INSTEAD OF INSERT ON messages
BEGIN
    INSERT INTO message_rows (call_id, kind, idx, offset_us, payload_id, compressed)
    VALUES (NEW.call_id, CASE NEW.direction WHEN 'request' THEN 0 WHEN 'response' THEN 1 END, NEW.idx,
            CAST(round(NEW.offset_ms * 1000) AS INTEGER), NEW.payload_id, COALESCE(NEW.compressed, 0));
END;

CREATE TRIGGER messages_update INSTEAD OF UPDATE ON messages
BEGIN
    UPDATE message_rows SET call_id = NEW.call_id,
        kind = CASE NEW.direction WHEN 'request' THEN 0 WHEN 'response' THEN 1 END, idx = NEW.idx,
        offset_us = CAST(round(NEW.offset_ms * 1000) AS INTEGER), payload_id = NEW.payload_id,
        compressed = NEW.compressed
    WHERE call_id = OLD.call_id AND kind = (CASE OLD.direction WHEN 'request' THEN 0 ELSE 1 END) AND idx = OLD.idx;
END;

CREATE TRIGGER messages_delete INSTEAD OF DELETE ON messages
BEGIN
    DELETE FROM message_rows
    WHERE call_id = OLD.call_id AND kind = (CASE OLD.direction WHEN 'request' THEN 0 ELSE 1 END) AND idx = OLD.idx;
END;

-- The same version narrows one index: 0003's `calls_started_unix` was on (started_unix, id),
-- but an index entry ends with the row's id anyway (id is the rowid), so `id` was stored
-- twice; on (started_unix) alone the index still gives replay's and retention's
-- `ORDER BY started_unix, id` without a sort (about 3.5 of its 21.5 bytes a call).
DROP INDEX calls_started_unix;
CREATE INDEX calls_started_unix ON call_rows (started_unix);
