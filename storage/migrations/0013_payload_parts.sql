-- 0013_payload_parts: a delta of a few KiB stored in 1 KiB parts, so pages are not left part-empty.
--
-- A table row is kept whole in one b-tree page when it fits (up to the page less 35 bytes), and
-- a new row that does not fit beside the rows already there starts a new page. A stats reply's
-- delta (ListContainerStats for 80 pods: about 5 KB, every 10 s) is such a row: each one left
-- the rest of its page's predecessor empty, about 30% of the `payloads` pages on
-- benchmarks/storage.py's node. In parts of 1 KiB, the parts fill their pages (about 91%).
--
-- A payload whose `delta` is the empty blob (a delta is never empty) has its delta in
-- `payload_parts`: the rows whose id is payload id * 64 + 0, 1, ..., in order, each at most 1 KiB
-- but the last. The part's number in the row id needs no index; 64 parts bound the deltas stored
-- so (larger ones stay in the row: their overflow pages are full but the last).
-- Nothing is copied: the rows already in the file stay as they are.

CREATE TABLE payload_parts (
    id INTEGER PRIMARY KEY,  -- payload id * 64 + the part's number
    data BLOB NOT NULL
);

-- A payload deleted (retention, a trimmed snapshot) takes its parts with it.
CREATE TRIGGER payload_parts_gone AFTER DELETE ON payloads WHEN length(OLD.delta) = 0
BEGIN
    DELETE FROM payload_parts WHERE id >= OLD.id * 64 AND id < OLD.id * 64 + 64;
END;
