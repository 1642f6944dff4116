"""cri_proxy/recorder/payload_rows.py: each body stored once (by its bytes or its sha256) and
large ones capped, through a real Recorder and SQLite file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import integrity, kubelet_second, make_call, make_unique, record, rows, version_call

pytestmark = pytest.mark.timeout(60)


def test_identical_payloads_are_stored_once_and_bytes_per_call(tmp_path: Path) -> None:
    seconds = 120
    calls = [c for s in range(seconds) for c in kubelet_second(s)]
    dedup, plain = tmp_path / "dedup.db", tmp_path / "plain.db"
    record(dedup, calls)
    calls = [c for s in range(seconds) for c in kubelet_second(s)]
    recorder = Recorder(plain, redact=make_unique)
    recorder.start()
    for call in calls:
        recorder.submit(call)
    recorder.close()
    n = len(calls)
    (messages, payloads, logical, stored) = rows(
        dedup, "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM payloads), "
               "(SELECT sum(p.size) FROM messages m JOIN payloads p ON p.id = m.payload_id), "
               "(SELECT sum(size) FROM payloads)")[0]  # fmt: skip
    assert payloads < messages / 5
    sizes = {}
    for name, path in (("dedup", dedup), ("no dedup", plain)):
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        sizes[name] = path.stat().st_size
    print(f"\nkubelet-like mix: {n} calls over {seconds} s ({n / seconds:.1f}/s), {messages} messages, "
          f"{payloads} distinct payloads; message bytes/call {logical / n:.0f}, stored payload bytes/call "
          f"{stored / n:.0f}; file bytes/call: dedup {sizes['dedup'] / n:.0f}, no dedup {sizes['no dedup'] / n:.0f}")
    assert sizes["dedup"] * 3 < sizes["no dedup"]
    assert integrity(dedup) == ["ok"]


def test_small_bodies_known_by_their_bytes_are_stored_once_across_batches_and_runs(tmp_path: Path) -> None:
    """A small body is found by its bytes before it is hashed: across batches, and after the
    file is opened again (the row found by its sha256); a body differing by a byte is new."""
    path = tmp_path / "c.db"
    for _ in range(2):  # two runs on one file, each with two batches
        record(path, [version_call(i) for i in range(6)], batch_max_calls=3)
    other = make_call("Version", {"version": "0.1.1"}, {"runtime_name": "containerd"})
    record(path, [other])
    bodies = {m.data for i in range(6) for m in version_call(i).messages} | {m.data for m in other.messages}
    assert rows(path, "SELECT count(*), count(DISTINCT sha256) FROM payloads") == [(len(bodies), len(bodies))]
    assert rows(path, "SELECT count(*) FROM messages") == [(2 * 12 + 2,)]
    stored = {bytes(r[0]) for r in rows(path, "SELECT p.data FROM messages m JOIN payloads p ON p.id = m.payload_id")}
    assert stored == bodies
    assert integrity(path) == ["ok"]


def test_large_payloads_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    big = make_call("ListImages", {}, {"images": [{"id": f"sha256:{k:064d}", "size": "1"} for k in range(200)]})
    data = big.messages[1].data
    record(path, [big, make_call("Version", {}, {"version": "x"})], max_payload_bytes=4096)
    assert len(data) > 4096
    got = rows(path, "SELECT size, data IS NULL, json IS NULL, truncated, sha256 FROM payloads ORDER BY size DESC")
    assert got[0] == (len(data), 1, 1, 1, hashlib.sha256(data).hexdigest())
    assert all(r[3] == 0 for r in got[1:])
    assert rows(path, "SELECT response_bytes FROM calls WHERE method = 'ListImages'") == [(len(data),)]
