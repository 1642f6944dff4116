"""cri_proxy/store/parts.py: a delta of a few KiB stored in 1 KiB parts (schema 13), in a real
SQLite file written by the real Recorder, read back byte for byte by both readers, taken away
with its payload, and a missing part costing only its own body."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder import packing
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.writer import BatchWriter, Totals
from cri_proxy.store import parts
from cri_proxy.store.reader import CallStream, load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record, rows, stats_reply

STEP = packing.CHAIN_STEP_S


def _stats_call(data: bytes, k: int) -> RecordedCall:
    """The k-th reply, a chain's step after the one before (each is the next one's base)."""
    return make_call("ListContainerStats", {}, data, started=T0 + k * STEP)


def _replies(containers: int, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [stats_reply(containers, 10 * k, rng) for k in range(count)]


def _read(path: Path) -> list[list[bytes]]:
    conn = open_readonly(path)
    try:
        return [c.responses for c in load_calls(conn, Selection()) if c.complete]
    finally:
        conn.close()


async def _stream(path: Path) -> list[list[bytes]]:
    async with await CallStream.open(path, Selection()) as stream:
        return [c.responses async for c in stream if c.complete]


def test_deltas_of_a_few_kib_are_in_parts_and_read_back_by_both_readers(tmp_path: Path) -> None:
    sent = _replies(200, 12, 1) + _replies(80, 3, 2)  # 200 containers: deltas of 2-3 KiB; 80: under 1 KiB
    path = tmp_path / "calls.db"
    record(path, [_stats_call(d, k) for k, d in enumerate(sent)])
    stored = rows(path, "SELECT id, length(delta) FROM payloads WHERE delta IS NOT NULL ORDER BY id")
    cut = [pid for pid, size in stored if size == 0]
    assert len(cut) >= 8 and any(size > 0 for _, size in stored)  # some in parts, small ones in the row
    for pid in cut:  # the parts: numbered from payload id * 64, all full but the last
        sizes = [size for (size,) in rows(path, "SELECT length(data) FROM payload_parts WHERE id >= ? AND id < ? "
                                                "ORDER BY id", pid * parts.MAX_PARTS, (pid + 1) * parts.MAX_PARTS)]
        assert len(sizes) >= 2 and set(sizes[:-1]) == {parts.PART_BYTES} and 0 < sizes[-1] <= parts.PART_BYTES
    assert _read(path) == [[d] for d in sent]
    assert asyncio.run(_stream(path)) == [[d] for d in sent]


def test_a_missing_part_costs_only_the_bodies_whose_chain_needs_it(tmp_path: Path) -> None:
    """A part lost (a file cut short, a hand edit): the calls whose delta needs that row, itself
    or as a link of its chain (recorder/packing.py), read as incomplete; the rest whole."""
    sent = _replies(200, 24, 3)  # past packing.MAX_CHAIN: a second chain starts at the keyframe
    path = tmp_path / "calls.db"
    record(path, [_stats_call(d, k) for k, d in enumerate(sent)])
    cut = [pid for (pid,) in rows(path, "SELECT id FROM payloads WHERE length(delta) = 0 ORDER BY id")]
    assert len(cut) >= 20
    damaged = cut[3]
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM payload_parts WHERE id >= ? AND id < ?",
                 (damaged * parts.MAX_PARTS, (damaged + 1) * parts.MAX_PARTS))
    conn.commit()
    conn.close()
    needing = {call_id for (call_id,) in rows(path, """
        WITH RECURSIVE up(start, at) AS (SELECT id, id FROM payloads UNION ALL
                                         SELECT up.start, p.base_id FROM up JOIN payloads p ON p.id = up.at
                                         WHERE p.base_id IS NOT NULL)
        SELECT DISTINCT m.call_id FROM up JOIN messages m ON m.payload_id = up.start WHERE up.at = ?""", damaged)}
    assert 1 < len(needing) < len(sent) - 3  # the chain after the damaged link, not the second chain
    conn = open_readonly(path)
    try:
        got = load_calls(conn, Selection())
    finally:
        conn.close()
    assert {c.id for c in got if not c.complete} == needing
    assert [c.responses for c in got] == [[d] if c.complete else [b""] for c, d in zip(got, sent)]


def test_pruned_deltas_take_their_parts_and_no_unneeded_link_stays(tmp_path: Path) -> None:
    """Retention in two passes: links kept in the first for the deltas after them go in the
    second once nothing needs them, with their parts; every body left is needed."""
    sent = _replies(200, 24, 4)
    path = tmp_path / "calls.db"
    writer = BatchWriter(path, SessionInfo(started_unix=T0, pid=1))
    writer.open(Totals())
    writer.write([PreparedCall.of(_stats_call(d, k)) for k, d in enumerate(sent)], Totals())
    before = rows(path, "SELECT count(*) FROM payload_parts")[0][0]
    assert writer.prune(T0 + 4.5 * STEP, None) == 5  # the first five calls: their bodies are links the others need
    assert rows(path, "SELECT count(*) FROM payload_parts")[0][0] == before
    assert writer.prune(T0 + 18.5 * STEP, None) == 14  # the first chain is no longer needed
    writer.close()
    needed = {pid for (pid,) in rows(path, """
        WITH RECURSIVE needed(id) AS (SELECT payload_id FROM messages UNION
                                      SELECT p.base_id FROM payloads p JOIN needed n ON p.id = n.id
                                      WHERE p.base_id IS NOT NULL)
        SELECT id FROM needed""")}
    assert {pid for (pid,) in rows(path, "SELECT id FROM payloads")} == needed
    kept = {pid for (pid,) in rows(path, "SELECT id FROM payloads WHERE length(delta) = 0")}
    owners = {pid // parts.MAX_PARTS for (pid,) in rows(path, "SELECT id FROM payload_parts")}
    assert owners == kept and 0 < rows(path, "SELECT count(*) FROM payload_parts")[0][0] < before
    assert _read(path) == [[d] for d in sent[19:]]
