"""cri_proxy/recorder/faults.py: the recorder lives through database faults (locked, read-only,
deleted, full, corrupt), real SQLite files: calls stay queued, are retried, and are counted lost
only after the attempts run out; the file comes back clean."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.errors import StorageError
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import db
from tests.helpers.calls import integrity, make_call, rows, version_call, wait_for

pytestmark = pytest.mark.timeout(60)


def timed_submits(recorder: Recorder, calls: list[RecordedCall]) -> float:
    """Submits the calls, returns the slowest submit in seconds (it must never block)."""
    worst = 0.0
    for call in calls:
        start = time.perf_counter()
        recorder.submit(call)
        worst = max(worst, time.perf_counter() - start)
    return worst


def retried(caplog: pytest.LogCaptureFixture, times: int) -> Callable[[], bool]:
    """True once the writer has retried a failed write `times` times (its debug lines): a
    positive sign that time passed with the fault in place, instead of a sleep."""
    caplog.set_level(logging.DEBUG, "cri_proxy.recorder.writer_loop")
    return lambda: sum("still failing" in r.getMessage() for r in caplog.records) >= times


@pytest.fixture
def fast_retry() -> RecorderOptions:
    return RecorderOptions(retry_interval_s=0.1, busy_timeout_s=0.1, max_attempts=1000, flush_interval_s=0.05)


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def test_locked_database(tmp_path: Path, fast_retry: RecorderOptions, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=fast_retry)
    recorder.start()
    other = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert other.stdin is not None and other.stdout is not None
    try:
        assert other.stdout.readline() == "locked\n"  # another process holds the write lock
        worst = timed_submits(recorder, [version_call(i) for i in range(200)])
        wait_for(lambda: not recorder.stats.healthy)
        wait_for(retried(caplog, 3))  # three retries under the lock, each failed and held
        assert recorder.stats.recorded == 0 and recorder.stats.lost == 0
    finally:
        other.stdin.close()
        other.wait(10)
    wait_for(lambda: recorder.stats.recorded == 200)
    assert recorder.stats.healthy
    recorder.close()
    assert worst < 0.05
    assert integrity(path) == ["ok"]


def test_locked_too_long_counts_the_batch_lost(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(retry_interval_s=0.05, busy_timeout_s=0.05, max_attempts=3))
    recorder.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for i in range(10):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.lost == 10)
    other.execute("ROLLBACK")
    other.close()
    recorder.submit(version_call(11))
    wait_for(lambda: recorder.stats.recorded == 1)
    recorder.close()
    assert rows(path, "SELECT calls_lost, loss_episodes FROM sessions") == [(10, 1)]
    ((reason, lost),) = rows(path, "SELECT reason, calls_lost FROM losses")
    assert lost == 10 and "locked" in reason
    assert integrity(path) == ["ok"]


def test_close_gives_up_on_a_locked_database_within_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(busy_timeout_s=0.1, retry_interval_s=0.1, max_attempts=1000))
    recorder.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for i in range(20):
            recorder.submit(version_call(i))
        start = time.monotonic()
        recorder.close(timeout_s=0.5)
        took = time.monotonic() - start
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert took < 2.0
    assert (recorder.stats.recorded, recorder.stats.lost, recorder.stats.queued) == (0, 20, 0)
    recorder.submit(version_call(99))  # after close: counted, never raised
    assert recorder.stats.lost == 21
    assert integrity(path) == ["ok"]


def _make_read_only(paths: list[Path]) -> Callable[[], None]:
    """Read-only files even for root (chattr +i); returns the undo."""
    root = os.geteuid() == 0
    if root and shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a file read-only")
    for p in paths:
        if not root:
            p.chmod(0o400)
        elif subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not supported on this file system")

    def undo() -> None:
        for p in paths:
            if root:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            else:
                p.chmod(0o600)

    return undo


def test_read_only_database_at_start(tmp_path: Path, fast_retry: RecorderOptions,
                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    db.open_database(path).close()
    undo = _make_read_only([path])
    try:
        with pytest.raises(StorageError):
            Recorder(path, options=fast_retry).start(strict=True)
        recorder = Recorder(path, options=fast_retry)
        recorder.start(strict=False)  # fail open: the proxy runs, recording is retried
        worst = timed_submits(recorder, [version_call(i) for i in range(50)])
        wait_for(retried(caplog, 2))  # the writer tried again, and the file is still read-only
        assert not recorder.stats.healthy and recorder.stats.recorded == 0
    finally:
        undo()
    wait_for(lambda: recorder.stats.recorded == 50)
    recorder.close()
    assert worst < 0.05
    assert integrity(path) == ["ok"]


def test_read_only_while_running(tmp_path: Path, fast_retry: RecorderOptions) -> None:
    # The -shm file stays writable: SQLite maps it, and a write to a mapping of an immutable
    # file is a SIGBUS that no program can catch.
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=fast_retry)
    recorder.start()
    recorder.submit(version_call(0))
    wait_for(lambda: recorder.stats.recorded == 1)
    undo = _make_read_only([path, Path(f"{path}-wal")])
    try:
        timed_submits(recorder, [version_call(i) for i in range(1, 51)])
        wait_for(lambda: not recorder.stats.healthy)
        assert recorder.stats.recorded == 1
    finally:
        undo()
    wait_for(lambda: recorder.stats.recorded == 51)
    recorder.close()
    assert integrity(path) == ["ok"]


def test_deleted_database_is_recreated(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=0.05))
    recorder.start()
    for i in range(10):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.recorded == 10)
    first_session = recorder.session_id
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{path}{suffix}")
    for i in range(10, 30):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.recorded == 30)
    recorder.close()
    assert rows(path, "SELECT count(*) FROM calls") == [(20,)]
    assert rows(path, "SELECT calls_recorded, ended_at IS NOT NULL FROM sessions") == [(30, 1)]
    assert first_session is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert integrity(path) == ["ok"]


def test_deleted_directory_comes_back(tmp_path: Path, fast_retry: RecorderOptions) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    path = folder / "calls.db"
    recorder = Recorder(path, options=fast_retry)
    recorder.start()
    shutil.rmtree(folder)
    timed_submits(recorder, [version_call(i) for i in range(20)])
    wait_for(lambda: not recorder.stats.healthy)
    folder.mkdir()
    wait_for(lambda: recorder.stats.recorded == 20)
    recorder.close()
    assert integrity(path) == ["ok"]


def test_full_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    options = RecorderOptions(max_database_bytes=40 * 16384, retry_interval_s=0.05, max_attempts=2,
                              flush_interval_s=0.02)  # fmt: skip
    recorder = Recorder(path, options=options)
    recorder.start()
    caplog.set_level(logging.WARNING, "cri_proxy.recorder.recorder")
    worst = 0.0
    for i in range(300):  # about 3 MB of distinct bodies into a 640 KiB database
        worst = max(worst, timed_submits(recorder, [make_call("Version", {"version": f"{i}" + "x" * 10_000}, {})]))
        time.sleep(0.002)
    wait_for(lambda: recorder.stats.queued == 0)
    stats = recorder.stats
    assert stats.lost > 0 and stats.recorded > 0 and stats.recorded + stats.lost == 300
    # logged once per episode (a small batch may still fit in a freed page, ending one)
    began = sum("disk is full" in r.getMessage() for r in caplog.records)
    ended = sum("works again" in r.getMessage() for r in caplog.records)
    assert began == ended + (0 if stats.healthy else 1) and began <= 5, (began, ended)
    recorder.close()
    assert worst < 0.05
    assert integrity(path) == ["ok"]
    assert path.stat().st_size <= 40 * 16384


def test_corrupt_database_at_start(tmp_path: Path, fast_retry: RecorderOptions) -> None:
    path = tmp_path / "calls.db"
    path.write_bytes(os.urandom(100_000))
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        Recorder(path, options=fast_retry).start(strict=True)
    recorder = Recorder(path, options=fast_retry)
    recorder.start(strict=False)
    recorder.submit(version_call(1))
    wait_for(lambda: recorder.stats.recorded == 1)
    recorder.close()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].stat().st_size == 100_000
    assert integrity(path) == ["ok"]


def test_database_replaced_by_a_corrupt_file(tmp_path: Path, fast_retry: RecorderOptions) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=fast_retry)
    recorder.start()
    recorder.submit(version_call(0))
    wait_for(lambda: recorder.stats.recorded == 1)
    junk = tmp_path / "junk"
    junk.write_bytes(b"SQLite format 3\x00" + os.urandom(50_000))  # a valid magic, garbage after it
    os.replace(junk, path)
    for suffix in ("-wal", "-shm"):
        os.unlink(f"{path}{suffix}")
    for i in range(1, 21):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.recorded == 21)
    recorder.close()
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]) == 1
    assert rows(path, "SELECT count(*) FROM calls") == [(20,)]
    assert integrity(path) == ["ok"]
