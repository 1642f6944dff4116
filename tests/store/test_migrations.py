"""storage/migrations/0010_message_rows.sql: the messages of an older file copied into the
narrow `message_rows`, read back through the `messages` view exactly as the table gave them,
joined through its primary key and index, and written through its triggers.
0011_lean_rows.sql: the index on session_id dropped, an older file's calls read the same and a
session's calls still come in order without a sort.
0012_call_shapes.sql: an older file's calls and messages copied into shapes and thin rows,
read back the same, and the users' filters still search.
0014_timeout_codes.sql: an older file's grpc-timeout texts kept, a new call's value a number,
every call's request metadata reading the same."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.call import Direction, Message
from cri_proxy.store import db, sql
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record
from tests.helpers.recordings import GOLDEN_DIR

pytestmark = pytest.mark.timeout(30)

MESSAGES = "SELECT call_id, direction, idx, offset_ms, payload_id, compressed FROM messages ORDER BY 1, 2, 3"
# What the read side and the views ask of `messages`: each must search, never scan, it.
JOINS = (
    ("SELECT p.json FROM calls AS c JOIN messages AS m ON m.call_id = c.id AND m.direction = 'request' "
     "AND m.idx = 0 JOIN payloads AS p ON p.id = m.payload_id WHERE c.method = 'PullImage'"),
    "SELECT 1 FROM messages WHERE payload_id = 3",
    "SELECT * FROM call_messages WHERE call_id = 7",
    "SELECT * FROM failed_probes",
)


# A call's messages in the tables behind `messages` (schema 12): kind, idx, the shape's own
# offset (NULL in a shared shape) and the offset the view gives.
SHAPE_MESSAGES = ("SELECT m.kind, m.idx, m.offset_us, COALESCE(m.offset_us, CASE m.kind WHEN 0 THEN r.request_offset_us "
                  "ELSE r.response_offset_us END) FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id "
                  "WHERE r.id = ?")


def _v9_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "v9.db"
    shutil.copy(GOLDEN_DIR / "schema-v9.db", copy)
    return copy


def test_migration_10_keeps_every_message_and_joins_still_search(tmp_path: Path) -> None:
    copy = _v9_copy(tmp_path)
    with sqlite3.connect(copy) as conn:
        before = conn.execute(MESSAGES).fetchall()
        bodies = conn.execute("SELECT call_id, direction, idx, offset_ms, data, json FROM call_messages "
                              "ORDER BY 1, 2, 3").fetchall()
    conn.close()
    new = make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}, started=T0)
    new.messages[1] = Message(Direction.RESPONSE, 0, 0.000636, new.messages[1].data)
    record(copy, [new])  # opened for writing: migrated
    conn = sqlite3.connect(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        after = conn.execute(MESSAGES).fetchall()
        assert after[:len(before)] == before  # the same values, floats and all
        assert [row[1:4] for row in after[len(before):]] == [("request", 0, 0.0), ("response", 0, 0.636)]
        assert conn.execute("SELECT call_id, direction, idx, offset_ms, data, json FROM call_messages "
                            "WHERE call_id <= ? ORDER BY 1, 2, 3", (before[-1][0],)).fetchall() == bodies
        assert conn.execute(SHAPE_MESSAGES + " ORDER BY m.kind", (after[-1][0],)).fetchall() == [
            (0, 0, None, 0), (1, 0, None, 636)]  # a shared shape: the offsets are the call row's (schema 12)
        assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'messages'").fetchone() == ("view",)
        for query in JOINS:
            plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
            assert "SCAN m" not in plan.split(" USING")[0] and "MATERIALIZE" not in plan, (query, plan)
            assert "SCAN shape_messages" not in plan and "SCAN r" not in plan.split(" USING")[0], (query, plan)
    finally:
        conn.close()
    reader = open_readonly(copy)
    try:
        [stored] = load_calls(reader, Selection(where=f"c.id = {after[-1][0]}"))
    finally:
        reader.close()
    assert [(m.direction, m.offset_s) for m in stored.call.messages] == [
        (Direction.REQUEST, 0.0), (Direction.RESPONSE, 0.636 / 1000)]  # the reader divides offset_ms, as before


def test_messages_can_be_inserted_updated_and_deleted_through_the_view(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})])
    conn = sqlite3.connect(path)
    try:
        [(call_id, payload_id)] = conn.execute("SELECT call_id, payload_id FROM messages "
                                               "WHERE direction = 'response'").fetchall()
        conn.execute("INSERT INTO messages (call_id, direction, idx, offset_ms, payload_id) "
                     "VALUES (?, 'response', 1, 2.5, ?)", (call_id, payload_id))
        conn.execute("UPDATE messages SET offset_ms = 3.25 WHERE call_id = ? AND direction = 'response' AND idx = 1",
                     (call_id,))
        assert conn.execute("SELECT offset_ms, compressed FROM messages WHERE call_id = ? AND direction = 'response' "
                            "AND idx = 1", (call_id,)).fetchall() == [(3.25, 0)]
        assert conn.execute(SHAPE_MESSAGES + " AND m.idx = 1", (call_id,)).fetchall() == [(1, 1, 3250, 3250)]
        with pytest.raises(sqlite3.IntegrityError, match="shape_messages.kind"):
            conn.execute("INSERT INTO messages (call_id, direction, idx, offset_ms, payload_id) "
                         "VALUES (?, 'sideways', 0, 0, ?)", (call_id, payload_id))
        conn.execute("DELETE FROM messages WHERE call_id = ? AND direction = 'request'", (call_id,))
        assert conn.execute(SHAPE_MESSAGES + " ORDER BY 1, 2", (call_id,)).fetchall() == [(1, 0, 1000, 1000), (1, 1, 3250, 3250)]
        conn.commit()
    finally:
        conn.close()


CALLS = "SELECT * FROM calls ORDER BY id"


def test_migration_11_keeps_every_call_and_a_session_still_reads_in_order(tmp_path: Path) -> None:
    copy = tmp_path / "v10.db"
    shutil.copy(GOLDEN_DIR / "schema-v10.db", copy)
    with sqlite3.connect(copy) as conn:
        before = conn.execute(CALLS).fetchall()
    conn.close()
    record(copy, [make_call("Version", started=T0 + 1), make_call("ContainerStatus", status=5, started=T0 + 2)])
    conn = sqlite3.connect(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        after = conn.execute(CALLS).fetchall()
        assert after[:len(before)] == before
        assert [row[8:14] for row in after[len(before):]] == [
            ("Version", "/runtime.v1.RuntimeService/Version", "v1", "v1", 0, "OK"),
            ("ContainerStatus", "/runtime.v1.RuntimeService/ContainerStatus", "v1", "v1", 5, "NOT_FOUND")]
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'calls_session'").fetchall() == []
        plan = " ".join(row[3] for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM calls AS c WHERE c.session_id = 2 ORDER BY c.started_unix, c.id"))
        assert "calls_started_unix" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        conn.close()


# What users filter on (storage/README.md, issue 16): each must search the shapes' and calls'
# indexes, never read call_rows whole nor materialize a view.
USERS = (
    "SELECT * FROM calls WHERE container_id IN ('a', 'b')",
    "SELECT * FROM calls WHERE pod_namespace = 'shop' AND pod_name = 'web'",
    "SELECT * FROM calls WHERE pod_sandbox_id = 'p'",
    "SELECT * FROM calls WHERE method = 'ExecSync' ORDER BY started_unix",
    "SELECT * FROM messages WHERE payload_id = 3",
    "SELECT * FROM calls AS c JOIN messages AS m ON m.call_id = c.id WHERE c.id = 7",
    "SELECT * FROM images_pulled",
    "SELECT * FROM errors",
)


def test_migration_12_keeps_every_call_and_message_and_users_filters_search(tmp_path: Path) -> None:
    copy = tmp_path / "v11.db"
    shutil.copy(GOLDEN_DIR / "schema-v11.db", copy)
    with sqlite3.connect(copy) as conn:
        before, messages = conn.execute(CALLS).fetchall(), conn.execute(MESSAGES).fetchall()
        rollups = conn.execute("SELECT * FROM call_minutes ORDER BY 1, 2, 3, 4").fetchall()
    conn.close()
    record(copy, [make_call("Version", started=T0 + 1)])
    conn = sqlite3.connect(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        assert conn.execute(CALLS).fetchall()[:len(before)] == before  # floats, texts and all
        assert conn.execute(MESSAGES).fetchall()[:len(messages)] == messages
        assert conn.execute("SELECT count(*) FROM call_shapes").fetchone()[0] < len(before)  # some shared
        assert conn.execute("SELECT count(*) FROM call_rows WHERE started_at IS NOT NULL").fetchone() == (0,)
        conn.execute("DELETE FROM calls WHERE id <= ?", (before[-1][0],))  # the rollups' trigger reads shapes
        assert conn.execute("SELECT sum(calls) FROM call_minutes").fetchone() == (1,)
        assert sum(r[4] for r in rollups) == len(before)
        for query in USERS:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}")]
            assert not [p for p in plan if p.startswith(("SCAN r", "SCAN m", "MATERIALIZE"))], (query, plan)
    finally:
        conn.close()


# grpc-timeout values as schema 12 kept them in call_rows: numbers' spellings, and texts that
# are not (leading zeros, an odd unit: what a view over a hand-edited file may hold), and none.
TIMEOUTS = ("1999881u", "119997m", "0n", "99999999H", "007S", "12x", None)


def test_migration_14_turns_timeouts_into_numbers_and_calls_read_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "v12.db"
    shutil.copy(GOLDEN_DIR / "schema-v12.db", copy)
    with sqlite3.connect(copy) as conn:  # the demo's client sends no timeout: give its calls some
        conn.execute("""UPDATE metadata_sets SET pairs = substr(pairs, 1, length(pairs) - 1) || ', ["grpc-timeout", ""]]'
                         WHERE id IN (SELECT request_metadata_id FROM call_shapes)""")
        for call_id, in conn.execute("SELECT id FROM call_rows").fetchall():
            conn.execute("UPDATE call_rows SET grpc_timeout = ? WHERE id = ?", (TIMEOUTS[call_id % len(TIMEOUTS)], call_id))
        before = conn.execute(CALLS).fetchall()
    conn.close()
    assert any('"grpc-timeout", "1999881u"' in str(row) for row in before)
    new = make_call("Version", started=T0 + 1)
    new.request_metadata = [("content-type", "application/grpc"), ("grpc-timeout", "4999m")]
    record(copy, [new])
    conn = sqlite3.connect(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        after = conn.execute(CALLS).fetchall()
        assert after[:len(before)] == before
        assert '["grpc-timeout", "4999m"]' in after[-1][23]  # request_metadata
        # The older rows keep their texts (not rewritten); the new call's value is a number.
        assert conn.execute("SELECT count(grpc_timeout) FROM call_rows").fetchone()[0] == sum(
            1 for (i, *_) in before if TIMEOUTS[i % len(TIMEOUTS)] is not None)
        assert conn.execute("SELECT id, grpc_timeout, timeout_code FROM call_rows WHERE timeout_code IS NOT NULL"
                            ).fetchall() == [(after[-1][0], None, 4999 * 8 + 3)]
        # A change through the view keeps the timeout; a new request metadata text replaces it.
        conn.execute("UPDATE calls SET conn_id = 99 WHERE id = ?", (before[1][0],))
        assert conn.execute("SELECT request_metadata FROM calls WHERE id = ?", (before[1][0],)).fetchone()[0] == before[1][23]
        conn.execute("UPDATE calls SET request_metadata = '[]' WHERE id = ?", (before[1][0],))
        assert conn.execute("SELECT timeout_code, request_metadata FROM calls JOIN call_rows USING (id) WHERE id = ?",
                            (before[1][0],)).fetchone() == (None, "[]")
    finally:
        conn.close()


def test_a_response_offset_equal_to_the_duration_is_left_out_and_read_back_through_every_change(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    calls = [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}, started=T0 + i,
                       duration_ms=2.5) for i in range(4)]
    calls[1].messages[1] = Message(Direction.RESPONSE, 0, 0.0021, calls[1].messages[1].data)  # before the trailers
    calls[2].duration_s = None  # never finished: nothing to take the offset from
    record(path, calls)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT response_offset_us FROM call_rows ORDER BY id").fetchall() == [(None,), (2100,), (2500,), (None,)]
        offsets = "SELECT offset_ms FROM messages WHERE direction = 'response' ORDER BY call_id"
        want = [(2.5,), (2.1,), (2.5,), (2.5,)]
        assert conn.execute(offsets).fetchall() == want
        conn.execute("UPDATE calls SET duration_ms = 9 WHERE id = 1")  # the response stays where it was
        assert conn.execute(offsets).fetchall() == want
        conn.execute("UPDATE messages SET idx = 0 WHERE call_id = 4 AND direction = 'response'")  # an own shape
        assert conn.execute(offsets).fetchall() == want
        assert conn.execute("SELECT m.offset_us FROM call_rows AS r JOIN shape_messages AS m ON m.shape_id = r.shape_id "
                            "WHERE r.id = 4 AND m.kind = 1").fetchall() == [(2500,)]
    finally:
        conn.close()
    loaded = load_calls(open_readonly(path), Selection())
    assert [round(s.response_offsets_s[0], 6) for s in loaded] == [0.0025, 0.0021, 0.0025, 0.0025]
