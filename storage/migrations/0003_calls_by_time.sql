-- 0003_calls_by_time: calls in the order they started. Replay reads calls ORDER BY
-- started_unix, id, and pruning by age deletes `started_unix < ?` oldest first: without this
-- index both scan the whole table and sort it.

CREATE INDEX calls_started_unix ON calls(started_unix, id);
