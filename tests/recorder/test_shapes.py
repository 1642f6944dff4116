"""recorder/shapes.py and the writer's use of it (schema 12): calls that repeat share one shape
and add a thin row each; a stream's messages have a shape of their own; every call reads back
through `calls`, `messages` and the reader as it was recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.call import Direction, Message, RecordedCall
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.writer import BatchWriter, Totals
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.rows import utc_text
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record, rows

pytestmark = pytest.mark.timeout(30)


def _status(k: int, container: str = "c1") -> RecordedCall:
    call = make_call("ContainerStatus", {"container_id": container}, {"status": {"id": container}},
                     started=T0 + k + 0.0005 * k, duration_ms=0.25 + k, stream_id=2 * k + 1)
    call.messages[1] = Message(Direction.RESPONSE, 0, 0.0001 * (k + 1), call.messages[1].data)
    return call


def test_repeated_calls_share_a_shape_and_store_no_messages_of_their_own(tmp_path: Path) -> None:
    calls = [_status(k) for k in range(5)] + [_status(5, "c2")]
    path = tmp_path / "calls.db"
    record(path, calls)
    assert rows(path, "SELECT count(*) FROM call_shapes") == [(2,)]  # c1's five calls, c2's one
    assert rows(path, "SELECT count(*) FROM shape_messages") == [(4,)]  # a request and a response each
    assert rows(path, "SELECT count(*) FROM shape_messages WHERE offset_us IS NOT NULL") == [(0,)]
    got = rows(path, "SELECT started_at, started_unix, duration_ms, container_id FROM calls ORDER BY id")
    assert got == [(utc_text(c.started_at), c.started_at, round(c.duration_s * 1000, 3), "c2" if k == 5 else "c1")
                   for k, c in enumerate(calls)]
    offsets = rows(path, "SELECT call_id, direction, offset_ms FROM messages ORDER BY 1, 2")
    assert offsets == [(k + 1, d, 0.0 if d == "request" else round(0.1 * (k + 1), 3))
                       for k in range(6) for d in ("request", "response")]
    assert rows(path, "SELECT count(*) FROM call_rows WHERE started_at IS NOT NULL") == [(0,)]  # derived by the view


def test_a_stream_has_a_shape_of_its_own_with_its_offsets(tmp_path: Path) -> None:
    stream = make_call("ContainerStatus", {"container_id": "c1"}, {"status": {"id": "c1"}})
    data = stream.messages[1].data
    stream.messages[1:] = [Message(Direction.RESPONSE, i, 0.001 * (i + 1), data) for i in range(3)]
    path = tmp_path / "calls.db"
    record(path, [stream, _status(1), _status(2)])
    assert rows(path, "SELECT call_id FROM call_shapes ORDER BY id") == [(1,), (None,)]
    assert rows(path, "SELECT direction, idx, offset_ms FROM messages WHERE call_id = 1 ORDER BY 1, 2") == [
        ("request", 0, 0.0), ("response", 0, 1.0), ("response", 1, 2.0), ("response", 2, 3.0)]
    conn = open_readonly(path)
    try:
        [first, *_] = load_calls(conn, Selection())
    finally:
        conn.close()
    assert [(m.direction, m.index, m.offset_s, m.data) for m in first.call.messages] == [
        (m.direction, m.index, m.offset_s, m.data) for m in stream.messages]


def test_a_rolled_back_batch_forgets_its_shapes(tmp_path: Path) -> None:
    """A batch fails after it made a new shape: the next batch must not point at the lost row."""
    path = tmp_path / "calls.db"
    writer = BatchWriter(path, SessionInfo(started_unix=T0, pid=1))
    writer.open(Totals())
    other = sqlite3.connect(path)
    other.execute("CREATE TRIGGER boom BEFORE INSERT ON call_rows BEGIN SELECT RAISE(ABORT, 'boom'); END")
    other.commit()
    with pytest.raises(sqlite3.IntegrityError):
        writer.write([PreparedCall.of(_status(0))], Totals())
    other.execute("DROP TRIGGER boom")
    other.commit()
    other.close()
    writer.write([PreparedCall.of(_status(1)), PreparedCall.of(_status(2))], Totals())
    writer.close()
    assert rows(path, "SELECT count(*), count(DISTINCT shape_id) FROM call_rows") == [(2, 1)]
    assert rows(path, "SELECT count(*) FROM call_shapes") == [(1,)]
    assert rows(path, "SELECT request_count, response_count FROM calls") == [(1, 1), (1, 1)]
    assert rows(path, "SELECT count(*) FROM messages") == [(4,)]


def test_pruning_takes_the_shapes_no_call_keeps(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    writer = BatchWriter(path, SessionInfo(started_unix=T0, pid=1))
    writer.open(Totals())
    writer.write([PreparedCall.of(_status(0, "gone")), PreparedCall.of(_status(1)),
                  PreparedCall.of(_status(3))], Totals())
    assert writer.prune(T0 + 2, None) == 2  # gone's call and c1's first
    writer.write([PreparedCall.of(_status(4, "gone"))], Totals())  # its shape made again, not remembered
    writer.close()
    assert rows(path, "SELECT id FROM call_shapes ORDER BY id") == [(2,), (3,)]  # gone's first shape went
    assert rows(path, "SELECT count(*) FROM shape_messages") == [(4,)]
    assert rows(path, "SELECT count(*) FROM payloads WHERE id NOT IN (SELECT payload_id FROM shape_messages)") == [
        (0,)]
    conn = open_readonly(path)
    try:
        got = load_calls(conn, Selection())
    finally:
        conn.close()
    assert [c.requests for c in got] == [[_status(3).messages[0].data], [_status(4, "gone").messages[0].data]]


def test_a_call_changed_through_the_view_leaves_the_calls_of_its_old_shape_alone(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [_status(k) for k in range(3)])
    before = rows(path, "SELECT * FROM calls ORDER BY id")
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET status_code = 5, status_name = 'NOT_FOUND' WHERE id = 2")
    conn.execute("DELETE FROM messages WHERE call_id = 3 AND direction = 'response'")
    conn.commit()
    conn.close()
    after = rows(path, "SELECT * FROM calls ORDER BY id")
    assert after[0] == before[0]
    assert after[1][12:14] == (5, "NOT_FOUND") and after[1][:12] == before[1][:12]
    assert after[2] == before[2]
    assert rows(path, "SELECT call_id, direction FROM messages ORDER BY 1, 2") == [
        (1, "request"), (1, "response"), (2, "request"), (2, "response"), (3, "request")]
