"""The recorder and its writer against real SQLite files: batches, dedup, caps, redaction,
queue overflow, database faults (locked, read-only, deleted, full, corrupt), kill -9, load.

Also a script: `python -m tests.recorder.test_writer sustain --rate 1000 --seconds 60` checks a
rate is sustained with zero loss; `... max` measures the writer's ceiling; `... load PATH` is
the writer process the kill -9 test runs.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.errors import StorageError
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import db
from cri_proxy.store.readonly import open_readonly
from tests.conftest import ROOT
from tests.helpers.calls import (
    integrity,
    kubelet_second,
    make_call,
    make_unique,
    record,
    rows,
    version_call,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


# -- a kubelet-like mix ---------------------------------------------------------------------












# -- helpers ----------------------------------------------------------------------------------








def timed_submits(recorder: Recorder, calls: list[RecordedCall]) -> float:
    """Submits the calls, returns the slowest submit in seconds (it must never block)."""
    worst = 0.0
    for call in calls:
        start = time.perf_counter()
        recorder.submit(call)
        worst = max(worst, time.perf_counter() - start)
    return worst


@pytest.fixture
def fast_retry() -> RecorderOptions:
    return RecorderOptions(retry_interval_s=0.1, busy_timeout_s=0.1, max_attempts=1000, flush_interval_s=0.05)


# -- batches, dedup, caps, redaction, sessions ------------------------------------------------


def test_a_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=0.3, batch_max_calls=1000))
    recorder.start()
    reader = open_readonly(path)
    seen = set()
    try:
        for i in range(300):
            recorder.submit(version_call(i))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and 300 not in seen:
            seen.add(reader.execute("SELECT count(*) FROM calls").fetchone()[0])
    finally:
        reader.close()
        recorder.close()
    assert seen <= {0, 300} and 300 in seen, seen  # never a partial batch


def test_full_batches_flush_without_waiting_for_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=30, batch_max_calls=50))
    recorder.start()
    try:
        for i in range(100):
            recorder.submit(version_call(i))
        wait_for(lambda: recorder.stats.recorded == 100, timeout=5)
    finally:
        recorder.close()


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


def test_secrets_are_redacted_before_hashing(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    pull = make_call("PullImage", {"image": {"image": "private.example/app:1"},
                                   "auth": {"username": "bob", "password": "hunter2"}}, {"image_ref": "sha256:1"})  # fmt: skip
    original = pull.messages[0].data
    record(path, [pull])
    (data, sha, json_text), = rows(path, "SELECT data, sha256, json FROM call_messages WHERE direction = 'request'")
    assert b"hunter2" not in data and "hunter2" not in json_text
    assert sha == hashlib.sha256(data).hexdigest() != hashlib.sha256(original).hexdigest()
    assert b"hunter2" not in Path(path).read_bytes()
    assert rows(path, "SELECT redacted, notes IS NOT NULL FROM calls") == [(1, 1)]


def test_session_row_start_update_and_end(tmp_path: Path) -> None:
    from cri_proxy.model.session import SessionInfo

    path = tmp_path / "calls.db"
    session = SessionInfo(listen="/run/cri-proxy.sock", runtime_endpoint="unix:///run/containerd/containerd.sock",
                          config={"record": str(path)})  # fmt: skip
    recorder = Recorder(path, session)
    recorder.start()
    recorder.update_session(runtime_api="v1", image_api="v1")
    recorder.submit(version_call(1))
    wait_for(lambda: rows(path, "SELECT runtime_api, calls_recorded FROM sessions") == [("v1", 1)])
    assert rows(path, "SELECT ended_at FROM sessions") == [(None,)]
    recorder.close()
    got = rows(path, "SELECT listen, runtime_endpoint, runtime_api, image_api, calls_recorded, calls_lost, "
                     "ended_at IS NOT NULL, config, cri_proxy_version FROM sessions")  # fmt: skip
    assert got == [("/run/cri-proxy.sock", "unix:///run/containerd/containerd.sock", "v1", "v1", 1, 0, 1,
                    f'{{"record": "{path}"}}', "0.1.0")]  # fmt: skip


def test_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    old = os.umask(0)
    try:
        recorder = Recorder(path)
        recorder.start()
        recorder.submit(version_call(1))
        wait_for(lambda: recorder.stats.recorded == 1)
        modes = {s: stat.S_IMODE(os.stat(f"{path}{s}").st_mode) for s in ("", "-wal", "-shm")}
        recorder.close()
    finally:
        os.umask(old)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


# -- the queue --------------------------------------------------------------------------------


def test_queue_overflow_is_counted_once_per_episode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=10, flush_interval_s=0.05))
    caplog.set_level(logging.WARNING, "cri_proxy.recorder.recorder")
    for i in range(25):  # not started yet: nothing drains the queue
        recorder.submit(version_call(i))
    assert (recorder.stats.queued, recorder.stats.lost, recorder.stats.loss_episodes) == (10, 15, 1)
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    recorder.start()
    wait_for(lambda: recorder.stats.queued == 0)
    for i in range(25, 30):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.recorded == 15)
    recorder.close()
    assert sum("drained" in r.getMessage() for r in caplog.records) == 1
    assert rows(path, "SELECT calls_recorded, calls_lost, loss_episodes FROM sessions") == [(15, 15, 1)]
    assert rows(path, "SELECT reason, calls_lost FROM losses") == [("queue full", 15)]


def test_queue_is_bounded_by_bytes(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "calls.db", options=RecorderOptions(max_queue_bytes=100_000))
    big = make_call("Version", {"version": "x" * 30_000}, {})
    for _ in range(5):
        recorder.submit(big)
    assert (recorder.stats.queued, recorder.stats.lost) == (3, 2)
    assert recorder.stats.queued_bytes <= 100_000


def test_keep_policy_skips_calls_before_the_queue(tmp_path: Path) -> None:
    from cri_proxy.recorder.keep import KeepPolicy

    policy = KeepPolicy.from_options(include=[], exclude=["List*"], sample=[])
    path = tmp_path / "calls.db"
    recorder = Recorder(path, keep=policy.keep)
    recorder.start()
    recorder.submit(make_call("ListContainers", {}, {}))
    recorder.submit(version_call(1))
    recorder.close()
    assert (recorder.stats.recorded, recorder.stats.skipped, recorder.stats.lost) == (1, 1, 0)
    assert rows(path, "SELECT method FROM calls") == [("Version",)]


def test_submit_never_raises(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "calls.db")
    broken = version_call(1)
    broken.messages = None  # type: ignore[assignment]
    recorder.submit(broken)
    assert recorder.stats.lost == 1


# -- database faults --------------------------------------------------------------------------


_HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def test_locked_database(tmp_path: Path, fast_retry: RecorderOptions) -> None:
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
        time.sleep(0.5)
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


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=60, batch_max_calls=100))
    recorder.start()
    for i in range(250):
        recorder.submit(version_call(i))
    recorder.close()
    assert rows(path, "SELECT count(*) FROM calls") == [(250,)]
    assert rows(path, "SELECT calls_recorded, calls_lost, ended_at IS NOT NULL FROM sessions") == [(250, 0, 1)]


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


def test_read_only_database_at_start(tmp_path: Path, fast_retry: RecorderOptions) -> None:
    path = tmp_path / "calls.db"
    db.open_database(path).close()
    undo = _make_read_only([path])
    try:
        with pytest.raises(StorageError):
            Recorder(path, options=fast_retry).start(strict=True)
        recorder = Recorder(path, options=fast_retry)
        recorder.start(strict=False)  # fail open: the proxy runs, recording is retried
        worst = timed_submits(recorder, [version_call(i) for i in range(50)])
        time.sleep(0.3)
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


# -- kill -9 and load -------------------------------------------------------------------------


def test_kill_9_mid_load_leaves_a_clean_database(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    proc = subprocess.Popen([sys.executable, "-m", "tests.recorder.test_writer", "load", str(path), "--rate", "3000"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    reported = []
    try:
        for line in proc.stdout:
            reported.append(tuple(map(int, line.split())))  # submitted, recorded
            if len(reported) >= 30 and reported[-1][1] > 500:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    submitted, recorded = reported[-1]
    conn = db.open_database(path)  # opens clean: WAL recovery, migrations already applied
    try:
        assert db.integrity_check(conn) == ["ok"]
        (in_db,) = conn.execute("SELECT count(*) FROM calls").fetchone()
        (ended,) = conn.execute("SELECT ended_at FROM sessions").fetchone()
    finally:
        conn.close()
    # Everything the recorder reported as committed survived; at most the queue and the
    # batch being written (about one flush interval of calls) were lost.
    assert recorded <= in_db <= submitted + 100, (recorded, in_db, submitted)
    assert ended is None
    print(f"\nkill -9 after {submitted} submitted: {in_db} in the database, {recorded} reported committed")


def test_sustains_1000_calls_per_second(tmp_path: Path) -> None:
    result = sustain(tmp_path / "calls.db", rate=1000, seconds=3.0)
    print(f"\n{result}")
    assert result["lost"] == 0 and result["recorded"] == result["submitted"]


def paced(rate: float, seconds: float) -> Iterator[int]:
    """Yields call numbers at `rate` per second for `seconds` (in small bursts every 5 ms)."""
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while n < due:
            yield n
            n += 1
        time.sleep(0.005)


def mix(n: int) -> Iterator[RecordedCall]:
    """Calls for a load: the kubelet mix, with a distinct ContainerStatus every other call."""
    base = [c for s in range(10) for c in kubelet_second(s)]
    for i in itertools.count():
        if i >= n:
            return
        if i % 2:
            yield make_call("ContainerStatus", {"container_id": f"{i:064d}"},
                            {"status": {"id": f"{i:064d}", "state": "CONTAINER_RUNNING", "metadata": {"name": "app"}}},
                            started=time.time())  # fmt: skip
        else:
            yield base[i % len(base)]


def sustain(path: Path, rate: float, seconds: float) -> dict[str, Any]:
    recorder = Recorder(path)
    recorder.start()
    calls = mix(int(rate * seconds) + 10)
    worst = 0.0
    submitted = 0
    for _ in paced(rate, seconds):
        t = time.perf_counter()
        recorder.submit(next(calls))
        worst = max(worst, time.perf_counter() - t)
        submitted += 1
    max_queue = recorder.stats.queued
    recorder.close()
    stats = recorder.stats
    return {"rate": rate, "seconds": seconds, "submitted": submitted, "recorded": stats.recorded,
            "lost": stats.lost, "queued_at_end": max_queue, "slowest_submit_ms": round(worst * 1000, 3),
            "file_mb": round(path.stat().st_size / 1e6, 2)}  # fmt: skip


def max_rate(path: Path, n: int, unique: bool) -> dict[str, Any]:
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=n + 1, max_queue_bytes=1 << 31))
    recorder.start()
    calls = [version_call(i) if unique else make_call("Version", {}, {"version": "x"}) for i in range(n)]
    start = time.perf_counter()
    for call in calls:
        recorder.submit(call)
    submit_s = time.perf_counter() - start
    while recorder.stats.recorded < n:
        time.sleep(0.01)
    total = time.perf_counter() - start
    recorder.close()
    return {"calls": n, "distinct_payloads": unique, "submit_us_per_call": round(submit_s / n * 1e6, 2),
            "written_per_s": round(n / total)}  # fmt: skip


def _load(path: Path, rate: float) -> None:
    """The writer process the kill -9 test runs: submits at `rate`, prints submitted/recorded."""
    recorder = Recorder(path)
    recorder.start()
    calls = mix(10**9)
    last = 0.0
    for n in paced(rate, 3600):
        recorder.submit(next(calls))
        if time.monotonic() - last > 0.02:
            print(n + 1, recorder.stats.recorded, flush=True)
            last = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.recorder.test_writer")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("path")
    load.add_argument("--rate", type=float, default=1000)
    keep = sub.add_parser("sustain")
    keep.add_argument("--rate", type=float, default=1000)
    keep.add_argument("--seconds", type=float, default=60)
    most = sub.add_parser("max")
    most.add_argument("--calls", type=int, default=50_000)
    args = parser.parse_args()
    if args.command == "load":
        _load(Path(args.path), args.rate)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "sustain":
            print(sustain(Path(tmp) / "calls.db", args.rate, args.seconds))
        else:
            print(max_rate(Path(tmp) / "a.db", args.calls, unique=True))
            print(max_rate(Path(tmp) / "b.db", args.calls, unique=False))


if __name__ == "__main__":
    main()
