"""cri_proxy/recorder/writer.py: the writer against real SQLite files: batches, metadata sets,
redaction, file mode, kill -9, load. (Dedup and caps, the queue, the database faults, the
session row and the recorder's admission have their twins: test_payload_rows.py,
test_queue.py, test_faults.py, test_sessions.py, test_recorder.py.)

Also a script: `python -m tests.recorder.test_writer sustain --rate 1000 --seconds 60` checks a
rate is sustained with zero loss; `... max` measures the writer's ceiling; `... load PATH` is
the writer process the kill -9 test runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.redact_json import REDACTED
from cri_proxy.store import db
from cri_proxy.store.readonly import open_readonly
from tests.conftest import ROOT
from tests.helpers.calls import (
    kubelet_second,
    make_call,
    record,
    rows,
    version_call,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


# -- batches, dedup, caps, redaction, file mode -----------------------------------------------


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


def test_nulls_and_blobs_bind_as_they_always_did(tmp_path: Path) -> None:
    """The writer's adapters for None and bytes (found at once, instead of failed lookups)
    store what the sqlite3 module stores without them: NULL, and the bytes as a BLOB."""
    call = make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})
    path = tmp_path / "c.db"
    record(path, [call])
    assert rows(path, "SELECT typeof(status_message), typeof(pod_name), typeof(exit_code), typeof(notes) "
                      "FROM calls") == [("null", "null", "null", "null")]
    assert rows(path, "SELECT typeof(data), data FROM payloads ORDER BY id") == [
        ("blob", m.data) for m in call.messages]
    conn = sqlite3.connect(":memory:")  # and for any other connection of the process
    assert conn.execute("SELECT typeof(?), typeof(?), ?", (None, b"\x00\x01", b"\x00\x01")).fetchone() == (
        "null", "blob", b"\x00\x01")


def test_calls_sharing_a_metadata_list_share_its_set(tmp_path: Path) -> None:
    """The tap hands one list to every call a server answers with the same headers; the
    writer looks its set up once per batch by the list, and an equal list of another call
    still finds the same set."""
    shared = [("content-type", "application/grpc"), ("x-served-by", "runtime-7")]
    calls = [make_call("Version", {"version": "0.1.0"}, {}, stream_id=2 * i + 1) for i in range(4)]
    for call in calls[:3]:
        call.response_metadata = shared
    calls[3].response_metadata = list(shared)
    calls[1].trailers = shared  # the same list as trailers too
    path = tmp_path / "c.db"
    record(path, calls)
    ids = rows(path, "SELECT s.response_metadata_id, s.trailers_id FROM call_rows AS r "
                     "JOIN call_shapes AS s ON s.id = r.shape_id ORDER BY r.id")
    assert len({r[0] for r in ids}) == 1 and ids[1][1] == ids[0][0]
    assert rows(path, "SELECT DISTINCT response_metadata FROM calls") == [(json.dumps([list(p) for p in shared]),)]


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


def test_env_values_are_redacted_in_every_form_and_read_as_text(tmp_path: Path) -> None:
    """v1's env value is bytes: the stored JSON reads it as text (`_bytes` says so), and the
    secret is in no form anywhere in the file: raw, base64 or text."""
    path = tmp_path / "calls.db"
    secret = "pa55-0f-the-db"
    create = make_call("CreateContainer", {"pod_sandbox_id": "p" * 64, "config": {
        "metadata": {"name": "app"}, "envs": [{"key": "DB_PASSWORD", "value": base64.b64encode(secret.encode()).decode()}]}},
        {"container_id": "c" * 64})  # fmt: skip
    record(path, [create])
    (json_text,), = rows(path, "SELECT json FROM call_messages WHERE direction = 'request'")
    (value, how), = rows(path, "SELECT json_extract(e.value, '$.value'), json_extract(e.value, '$._bytes.value') "
                               "FROM payloads AS p, json_each(p.json, '$.config.envs') AS e")  # fmt: skip
    assert (value, how) == (REDACTED, "text")
    blob = Path(path).read_bytes()
    for form in (secret.encode(), base64.b64encode(secret.encode())):
        assert form not in blob and form.decode() not in json_text


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


def test_batches_number_their_calls_on_from_the_file_and_link_each_message_to_its_own(tmp_path: Path) -> None:
    """The writer inserts a batch with one executemany per table and numbers the calls itself:
    on from what the file holds (an earlier run's calls too), each message on its own call."""
    path = tmp_path / "calls.db"
    record(path, [version_call(i) for i in range(3)])
    record(path, [version_call(i) for i in range(3, 703)], batch_max_calls=250)
    assert rows(path, "SELECT count(*), min(id), max(id), count(DISTINCT session_id) FROM calls") == [(703, 1, 703, 2)]
    stray = rows(path, "SELECT count(*) FROM calls c JOIN messages m ON m.call_id = c.id "
                       "JOIN payloads p ON p.id = m.payload_id "
                       "WHERE m.direction = 'request' AND p.json IS NOT json_object('version', 'v' || (c.id - 1))")
    assert stray == [(0,)]
    assert rows(path, "SELECT count(*) FROM messages") == [(2 * 703,)]
