"""Retention: the recorder prunes calls by age and by size while it runs."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder import retention
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import db
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection
from tests.helpers.calls import (
    T0,
    integrity,
    kubelet_second,
    make_call,
    make_unique,
    record,
    stats_reply,
    version_call,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


def rows(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_calls_older_than_the_retention_are_pruned_with_their_bodies(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(retain_s=3600, prune_interval_s=0.0))
    recorder.start()
    old = [version_call(i) for i in range(50)]
    for call in old:
        call.started_at = time.time() - 7200  # two hours ago
        recorder.submit(call)
    wait_for(lambda: recorder.stats.recorded == 50)
    fresh = kubelet_second(0, pods=2)
    for call in fresh:
        recorder.submit(call)
    wait_for(lambda: recorder.stats.recorded == 50 + len(fresh))
    recorder.submit(version_call(999))  # one more batch, which prunes
    wait_for(lambda: recorder.stats.recorded == 51 + len(fresh))
    recorder.close()
    assert rows(path, "SELECT count(*) FROM calls WHERE started_unix < strftime('%s','now') - 3600") == 0
    assert rows(path, "SELECT count(*) FROM calls") == len(fresh) + 1
    assert rows(path, "SELECT count(*) FROM payloads p WHERE NOT EXISTS "
                      "(SELECT 1 FROM messages m WHERE m.payload_id = p.id)") == 0
    assert integrity(path) == ["ok"]


def test_the_data_is_kept_under_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    limit = 1 << 19  # the 40 seconds below take about 0.8 MB in 8 KiB pages
    # Each second of calls is waited for before the next: a short flush interval keeps that
    # wait short (the batches stay one second of calls or less, pruned after each).
    recorder = Recorder(path, options=RecorderOptions(retain_bytes=limit, prune_interval_s=0.0, flush_interval_s=0.01))
    recorder.start()
    total = 0
    for second in range(40):  # unique bodies: several MB without pruning
        for call in kubelet_second(second, pods=20):
            recorder.submit(make_unique(call))
            total += 1
        wait_for(lambda: recorder.stats.recorded == total)
    recorder.close()
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        used = pages * conn.execute("PRAGMA page_size").fetchone()[0]
        kept, newest = conn.execute("SELECT count(*), max(started_unix) FROM calls").fetchone()
    assert used <= limit * 1.5  # within about a batch of the limit
    assert 0 < kept < total  # the oldest went...
    assert newest == max(c.started_at for c in kubelet_second(39, pods=20))  # ...the newest stayed
    assert integrity(path) == ["ok"]


def test_a_keyframe_stays_while_a_delta_needs_it_and_goes_with_the_last(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    rng = random.Random(2)
    sent = [stats_reply(60, s, rng) for s in range(6)]
    record(path, [make_call("ListContainerStats", {}, data, started=T0 + s) for s, data in enumerate(sent)])
    assert rows(path, "SELECT count(*) FROM payloads WHERE base_id IS NOT NULL") == 5  # one keyframe, five deltas
    conn = db.open_database(path)
    try:
        assert retention.prune(conn, T0 + 2.5, None) == 3  # the keyframe's call among them
    finally:
        conn.close()
    reader = open_readonly(path)
    try:
        assert [c.responses for c in load_calls(reader, Selection())] == [[data] for data in sent[3:]]
    finally:
        reader.close()
    conn = db.open_database(path)
    try:
        retention.prune(conn, T0 + 100, None)
    finally:
        conn.close()
    assert rows(path, "SELECT count(*) FROM payloads") == 0
