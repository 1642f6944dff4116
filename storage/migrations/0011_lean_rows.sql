-- 0011_lean_rows: the index on calls(session_id) dropped: it did not pay for itself.
--
-- `calls_session` cost about 9 bytes a call (benchmarks/storage.py's 80-pod node) and an
-- index entry the writer kept on every call. Only an explicit `--session N` filters on
-- session_id alone: a selection (replay, export, serve) reads in `started_unix` order along
-- `calls_started_unix`, testing each row's session (and no longer sorts all of them), and
-- `stats --session` reads `call_rows` in order. A file a proxy records into holds a session
-- per run, each most of the file; on a file of many sessions a small one's reads cost more.

DROP INDEX calls_session;
