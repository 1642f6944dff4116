"""cri_proxy/recorder/packing.py through the writer into a real SQLite file and read back:
stats replies as deltas, bodies above the cap, metadata sets and routes stored once, a
rolled-back batch, and pruning that keeps the keyframes its rows need."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.messages import decode
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder import packing
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.writer import BatchWriter, Totals
from cri_proxy.store import bodies, db
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.rows import metadata_text
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record, rows, stats_reply

STATS = "/runtime.v1.RuntimeService/ListContainerStats"


def _stats_call(data: bytes, second: int, timeout: str = "119999m") -> RecordedCall:
    call = make_call("ListContainerStats", {}, data, started=T0 + second)
    call.request_metadata = [("content-type", "application/grpc"), ("grpc-timeout", timeout), ("te", "trailers")]
    return call


def test_replies_like_the_last_are_deltas_and_read_back_byte_for_byte(tmp_path: Path) -> None:
    """Sizes around every threshold: the delta floor, the JSON cut, the decoder's cache, the
    keyframe memory, the payload cap (above which only size and hash are kept)."""
    rng = random.Random(7)
    calls, sent = [], []
    second = 0
    for containers in (3, 60, 2000):
        for _ in range(3):
            data = stats_reply(containers, second, rng)
            calls.append(_stats_call(data, second, f"{119_999 - second}m"))
            sent.append(data)
            second += 10
    # Over the keyframes' memory: bytes that do not decode (decoding 4 MiB to JSON takes seconds).
    noise = rng.randbytes(packing.KEYFRAME_BYTES + 1000)
    for k in range(3):
        sent.append(noise[:k * 1000] + b"x" + noise[k * 1000 + 1:])
        calls.append(_stats_call(sent[-1], second + k))
    assert len(sent[0]) < packing.DELTA_MIN_BYTES < len(sent[3]) and len(sent[-1]) > packing.KEYFRAME_BYTES
    assert len(sent[3]) > decode.CACHE_MESSAGE_BYTES and len(sent[3]) > packing.JSON_OMIT_BYTES
    path = tmp_path / "calls.db"
    record(path, calls, max_payload_bytes=16 << 20)
    conn = open_readonly(path)
    try:
        got = load_calls(conn, Selection())
    finally:
        conn.close()
    assert [c.responses for c in got] == [[data] for data in sent]
    assert all(c.complete for c in got)
    stored = rows(path, "SELECT p.size, p.data IS NULL, p.delta IS NOT NULL, p.base_id, p.json IS NULL, b.data IS NOT NULL "
                        "FROM messages m JOIN payloads p ON p.id = m.payload_id LEFT JOIN payloads b ON b.id = p.base_id "
                        "WHERE m.direction = 'response' ORDER BY m.call_id")  # fmt: skip
    assert [r[2] for r in stored[:6]] == [False, False, False, False, True, True]  # below the floor; a keyframe
    assert all(r[1] and r[3] is not None for r in stored if r[2])  # a delta: data NULL, a base
    assert [r[4] for r in stored[3:6]] == [False, True, True]  # a polled reply's delta keeps no JSON
    # Its base is the keyframe or a delta before it (a chain), at most MAX_CHAIN deltas from a
    # body stored whole, which is always there.
    chains = rows(path, "WITH RECURSIVE up(start, at, depth) AS (SELECT id, id, 0 FROM payloads WHERE delta IS NOT NULL "
                        "UNION ALL SELECT up.start, p.base_id, up.depth + 1 FROM up JOIN payloads p ON p.id = up.at "
                        "WHERE p.data IS NULL) "
                        "SELECT up.start, max(up.depth), max(b.data IS NOT NULL) FROM up LEFT JOIN payloads b ON b.id = up.at "
                        "GROUP BY up.start")  # fmt: skip
    assert chains and all(0 < depth <= packing.MAX_CHAIN and whole for _, depth, whole in chains)
    packed, size = rows(path, "SELECT sum(length(delta)), sum(size) FROM payloads WHERE delta IS NOT NULL")[0]
    assert packed * packing.DELTA_MAX_RATIO <= size


def test_the_same_replies_above_the_payload_cap_keep_only_size_and_hash(tmp_path: Path) -> None:
    rng = random.Random(8)
    sent = [stats_reply(200, s, rng) for s in (0, 10)]
    path = tmp_path / "calls.db"
    record(path, [_stats_call(d, s) for s, d in enumerate(sent)], max_payload_bytes=4096)
    assert rows(path, "SELECT size, data IS NULL, delta IS NULL, truncated FROM payloads WHERE size > 4096 ORDER BY id") == [
        (len(sent[0]), 1, 1, 1), (len(sent[1]), 1, 1, 1)]


def test_metadata_sets_are_stored_once_and_calls_give_the_text_as_sent(tmp_path: Path) -> None:
    calls = [_stats_call(b"", s, f"{119_999 - s % 7}m") for s in range(50)]
    calls[3].trailers = [("grpc-status", "5"), ("grpc-message", "no such container")]
    calls[4].request_metadata = [("content-type", "application/grpc")]  # no timeout
    calls[5].request_metadata = []  # none at all
    calls[6] = _stats_call(b"", 6, "0042S")  # not a number's spelling: kept as text (schema 13)
    calls[7] = _stats_call(b"", 7, "99999999H")
    path = tmp_path / "calls.db"
    record(path, calls)
    assert rows(path, "SELECT id FROM call_rows WHERE grpc_timeout IS NOT NULL") == [(7,)]
    assert rows(path, "SELECT count(*) FROM call_rows WHERE timeout_code IS NOT NULL") == [(47,)]
    assert rows(path, "SELECT count(*) FROM metadata_sets") == [(4,)]  # 2 requests', 2 trailers' (no response metadata)
    got = rows(path, "SELECT request_metadata, response_metadata, trailers FROM calls ORDER BY id")
    assert got == [(metadata_text(c.request_metadata), metadata_text(c.response_metadata), metadata_text(c.trailers))
                   for c in calls]
    assert rows(path, "SELECT count(*) FROM call_shapes WHERE request_metadata IS NOT NULL OR trailers IS NOT NULL") == [
        (0,)]


def test_a_rolled_back_batch_leaves_no_delta_pointing_at_a_lost_keyframe(tmp_path: Path) -> None:
    """A batch fails after it stored a new keyframe (a real SQLite error from a trigger): the
    next batch's deltas must not point at the keyframe's rolled-back row (whose id SQLite hands
    out again)."""
    rng = random.Random(9)
    path = tmp_path / "calls.db"
    writer = BatchWriter(path, SessionInfo(started_unix=T0, pid=1))
    writer.open(Totals())
    first = stats_reply(60, 0, rng, node="a")
    unlike, *later = (stats_reply(60, s, rng, node="b") for s in (10, 20, 30))
    writer.write([PreparedCall.of(_stats_call(first, 0))], Totals())
    other = sqlite3.connect(path)
    other.execute("CREATE TRIGGER boom BEFORE INSERT ON call_shapes WHEN NEW.method = 'Version' "
                  "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    other.commit()
    with pytest.raises(sqlite3.IntegrityError):
        writer.write([PreparedCall.of(_stats_call(unlike, 1)), PreparedCall.of(make_call("Version", {}, {}))], Totals())
    other.execute("DROP TRIGGER boom")
    other.commit()
    other.close()
    writer.write([PreparedCall.of(_stats_call(d, 2 + i)) for i, d in enumerate(later)], Totals())
    writer.close()
    conn = open_readonly(path)
    try:
        got = load_calls(conn, Selection())
    finally:
        conn.close()
    assert [c.responses for c in got] == [[first], [later[0]], [later[1]]]
    # later[0] is unlike `first`: stored as it is, the keyframe of later[1]'s delta.
    assert rows(path, "SELECT count(*) FROM payloads WHERE base_id IS NOT NULL") == [(1,)]


def test_pruning_keeps_the_keyframes_whose_rows_it_kept(tmp_path: Path) -> None:
    """Retention runs every few seconds: a stats reply after it is still a delta, also when the
    keyframe's own call was pruned (its body stays while a delta needs it)."""
    rng = random.Random(11)
    sent = [stats_reply(60, s, rng) for s in range(3)]
    path = tmp_path / "calls.db"
    writer = BatchWriter(path, SessionInfo(started_unix=T0, pid=1))
    writer.open(Totals())
    writer.write([PreparedCall.of(make_call("Version", {}, {}, started=T0 - 1000)),
                  PreparedCall.of(_stats_call(sent[0], 0))], Totals())
    assert writer.prune(T0 - 500, None) == 1  # the Version call only
    writer.write([PreparedCall.of(_stats_call(sent[1], 1))], Totals())
    assert writer.prune(T0 + 0.5, None) == 1  # the keyframe's call
    writer.write([PreparedCall.of(_stats_call(sent[2], 2))], Totals())
    writer.close()
    assert rows(path, "SELECT count(*) FROM payloads WHERE base_id IS NOT NULL") == [(2,)]
    conn = open_readonly(path)
    try:
        assert [c.responses for c in load_calls(conn, Selection())] == [[sent[1]], [sent[2]]]
    finally:
        conn.close()


def test_routes_are_stored_once_and_calls_shows_them_edited_and_deleted_as_before(tmp_path: Path) -> None:
    calls = [make_call("Version", {}, {}, started=T0 + k) for k in range(6)]
    calls[1].upstream = "unix:///run/other.sock"
    calls[2] = make_call("Version", {}, {}, started=T0 + 2, version="v1alpha2")
    path = tmp_path / "calls.db"
    record(path, calls)
    columns = "service, path, client_api, upstream_api, upstream"
    assert rows(path, f"SELECT {columns} FROM calls ORDER BY id") == [
        (c.service, c.path, c.client_api, c.upstream_api, c.upstream or None) for c in calls]
    assert rows(path, "SELECT count(*) FROM routes") == [(3,)]
    assert rows(path, "SELECT count(*) FROM call_shapes WHERE route_id NOT IN (SELECT id FROM routes)") == [
        (0,)]  # the text is the route's alone (schema 12: a shape names its route)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET upstream = 'unix:///edited.sock' WHERE id = 1")  # through the view
    conn.execute("UPDATE calls SET status_code = 5 WHERE id = 2")  # the route left as it was
    conn.execute("DELETE FROM calls WHERE id = 4")
    conn.commit()
    conn.close()
    got = rows(path, "SELECT c.id, c.service, c.path, c.client_api, c.upstream_api, c.upstream, s.call_id IS NOT NULL "
                     "FROM calls AS c JOIN call_rows AS r ON r.id = c.id JOIN call_shapes AS s ON s.id = r.shape_id "
                     "ORDER BY c.id")
    assert [row[5] for row in got] == ["unix:///edited.sock", "unix:///run/other.sock", *[calls[k].upstream for k in (2, 4, 5)]]
    assert [row[6] for row in got] == [1, 1, 0, 0, 0]  # an edited call gets a shape of its own (schema 12)
    assert rows(path, "SELECT count(*) FROM routes") == [(4,)]  # the edited route stored as a route
    assert got[0][1:5] == (calls[0].service, calls[0].path, calls[0].client_api, calls[0].upstream_api)
    # The rollups' delete trigger finds the service through the route: the minute's count went down.
    assert rows(path, "SELECT service, sum(calls) FROM call_minutes GROUP BY service ORDER BY service") == sorted(
        {(c.service, sum(1 for k, o in enumerate(calls) if o.service == c.service and k != 3)) for c in calls})
