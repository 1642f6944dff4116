"""The per-minute rollups: what the writer keeps batch by batch equals `call_minutes` computed
afresh from the calls (the migration's own SELECT), also after retention deleted calls and
after migrating an older recording; read-only, an older file computes the same."""

from __future__ import annotations

import shutil
from collections import Counter
import sqlite3
import time
from pathlib import Path

import pytest

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder import retention
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import compat, db
from cri_proxy.store.readonly import Recording
from tests.helpers.calls import make_call, record, wait_for
from tests.helpers.recordings import GOLDEN_DIR

pytestmark = pytest.mark.timeout(60)
ROLLUP = "SELECT * FROM call_minutes ORDER BY minute, session_id, service, method"
DURATIONS = "SELECT * FROM call_durations ORDER BY service, method, duration_ms"


def afresh(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM ({compat.call_minutes_select('1')}) ORDER BY 1, 2, 3, 4").fetchall()


def durations_afresh(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT * FROM ({compat.call_durations_select('1')}) ORDER BY 1, 2, 3").fetchall()


def varied_calls(start: float, n: int = 300) -> list:  # type: ignore[type-arg]
    """Calls over five minutes: several methods, failures, unfinished ones, non-zero exits."""
    calls = []
    for i in range(n):
        at = start + i  # one a second
        if i % 7 == 0:
            calls.append(make_call("ExecSync", {"container_id": "c1", "cmd": ["check"]}, {"exit_code": i % 3},
                                   started=at, duration_ms=float(i % 50) + 0.5, stream_id=2 * i + 1))  # fmt: skip
        elif i % 11 == 0:
            calls.append(make_call("ContainerStatus", {"container_id": "c9"}, None, status=5, started=at,
                                   duration_ms=None if i % 2 else 3.0, stream_id=2 * i + 1))  # fmt: skip
        else:
            calls.append(make_call("ListContainers" if i % 2 else "PullImage", {}, {}, started=at,
                                   duration_ms=float(i % 13) * 1.25, stream_id=2 * i + 1))  # fmt: skip
    return calls


def test_the_writer_keeps_them_batch_by_batch(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=0.01))
    recorder.start()
    calls = varied_calls(time.time() - 600)
    for i in range(0, len(calls), 25):  # many batches, minutes split across them
        for call in calls[i:i + 25]:
            recorder.submit(call)
        wait_for(lambda: recorder.stats.queued == 0)
    recorder.close()
    conn = sqlite3.connect(path)
    try:
        kept = conn.execute(ROLLUP).fetchall()
        assert kept == afresh(conn)
        assert conn.execute(DURATIONS).fetchall() == durations_afresh(conn)
        assert sum(r[4] for r in kept) == len(calls) == conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        assert conn.execute("SELECT SUM(nonzero_exits) FROM call_minutes").fetchone()[0] == \
            conn.execute("SELECT COUNT(*) FROM failed_probes").fetchone()[0] > 0  # fmt: skip
    finally:
        conn.close()


def test_deleted_calls_leave_them(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, varied_calls(time.time() - 600))
    conn = db.open_database(path)
    try:
        # the longest call of a minute, then half of the calls by age, as retention deletes them
        (longest,) = conn.execute("SELECT id FROM calls ORDER BY duration_ms DESC LIMIT 1").fetchone()
        retention.delete_calls(conn, [longest])
        cut = conn.execute("SELECT started_unix FROM calls ORDER BY started_unix LIMIT 1 OFFSET 150").fetchone()[0]
        assert retention.prune(conn, cut + 0.5, None, chunk=40) > 0
        assert conn.execute(ROLLUP).fetchall() == afresh(conn)
        assert conn.execute(DURATIONS).fetchall() == durations_afresh(conn)
        conn.execute("DELETE FROM messages")
        conn.execute("DELETE FROM calls")  # everything: no row stays behind
        assert conn.execute("SELECT COUNT(*) FROM call_minutes").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM call_durations").fetchone()[0] == 0
    finally:
        conn.close()


def test_migrating_an_older_recording_fills_them(tmp_path: Path) -> None:
    copy = tmp_path / "v5.db"
    shutil.copy(GOLDEN_DIR / "schema-v5.db", copy)
    before = Recording(copy)  # read-only: a TEMP view computes them
    try:
        assert before.schema_version == 5
        computed = before.conn.execute(ROLLUP).fetchall()
        durations = before.conn.execute(DURATIONS).fetchall()
        stats_before = before.conn.execute("SELECT * FROM method_stats ORDER BY service, method").fetchall()
    finally:
        before.close()
    conn = db.open_database(copy)
    try:
        assert conn.execute(ROLLUP).fetchall() == computed == afresh(conn)
        assert conn.execute(DURATIONS).fetchall() == durations == durations_afresh(conn)
        assert sum(r[4] for r in computed) == conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] > 0
        assert conn.execute("SELECT * FROM method_stats ORDER BY service, method").fetchall() == stats_before
    finally:
        conn.close()


def test_the_minute_counted_in_python_is_sqlites() -> None:
    """rollups.minute_of, and Rollup's shortcut while calls stay in one minute, against the
    SQL the rollups were computed with: on and beside the half-millisecond where SQLite's
    round() turns to the next minute, and before the epoch."""
    from cri_proxy.recorder.rollups import Rollup, minute_of

    edge = 1_764_000_000 - 0.0005  # a whole minute, less half a millisecond
    times = [edge, edge - 1e-6, edge + 1e-6, edge - 0.0004, 1_764_000_059.9994, 1_764_000_059.9996, 0.0, -0.0004,
             -0.0006, -59.9996, -60.0004, 1.5e9 + 0.25]
    conn = sqlite3.connect(":memory:")
    for at in times:
        sql = conn.execute("SELECT CAST(round(? * 1000) AS INTEGER) / 60000", (at,)).fetchone()[0]
        assert minute_of(at) == sql, at
    rollup = Rollup()
    for at in times:  # each counted through the shortcut's bounds, in this order
        rollup.count(1, make_call("Version", {}, {}, started=at, duration_ms=1.0), 1000, None)
    counted = {minute: group[0] for (minute, _, _), group in rollup._minutes.items()}
    assert counted == Counter(conn.execute("SELECT CAST(round(? * 1000) AS INTEGER) / 60000", (at,)).fetchone()[0]
                              for at in times)
