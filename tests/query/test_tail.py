"""`cri-proxy tail` as a subprocess following a recording the recorder writes meanwhile:
new calls appear as lines, -n and --since show earlier ones first, filters, jsonl, a clean
exit on SIGTERM and Ctrl-C, one line when the file goes away, a proxy starting and stopping."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.query.tail import Filters, first_rows, format_line, jsonl_line
from cri_proxy.store.rows import StoredCall
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store.readonly import Recording
from tests.helpers.calls import make_call, record, wait_for
from tests.helpers.cli import Tail, snapshot
from tests.helpers.probes import EXITS

pytestmark = pytest.mark.timeout(60)




@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for t in started:
        if t.proc.poll() is None:
            t.proc.kill()
        t.proc.wait(timeout=10)


def version(i: int, started: float | None = None) -> RecordedCall:
    return make_call("Version", {"version": f"v{i}"}, {"runtime_name": "containerd"},
                     started=time.time() if started is None else started)  # fmt: skip


def failing(i: int) -> RecordedCall:
    return make_call("ContainerStatus", {"container_id": f"{i:02d}" + "c" * 62}, None, status=5,
                     message=f'container "{i}" not found', started=time.time())  # fmt: skip


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Path, Recorder]]:
    """A recorder writing tmp_path/calls.db, with one call already recorded."""
    path = tmp_path / "calls.db"
    recorder = Recorder(path)
    recorder.start()
    recorder.submit(version(0))
    wait_for(lambda: recorder.stats.recorded == 1)
    try:
        yield path, recorder
    finally:
        recorder.close()


def test_follows_calls_written_while_it_runs(live: tuple[Path, Recorder], tails: list[Tail]) -> None:
    path, recorder = live
    tail = Tail("--db", str(path), "-n", "1")
    tails.append(tail)
    (first,) = tail.take(1)  # the call already there: tail is now following
    assert "v1.RuntimeService/Version" in first and " OK " in first
    started = time.monotonic()
    for i in range(1, 6):
        recorder.submit(version(i))
    recorder.submit(failing(7))
    lines = tail.take(6)
    assert time.monotonic() - started < 3
    assert all("v1.RuntimeService/Version" in line for line in lines[:5])
    assert lines[5].split()[2:4] == ["NOT_FOUND", "v1.RuntimeService/ContainerStatus"]
    assert "ctr=07cccccccccc " in lines[5] and lines[5].endswith('"container \\"7\\" not found"')
    assert tail.quiet()
    assert tail.stop(signal.SIGTERM) == 0
    assert tail.stderr() == ""


def _stored(started_at: str, duration_ms: float | None, path: str, status_code: int | None,
            status_message: str | None, outcome: str, request_bytes: int, **ids: str | None) -> StoredCall:
    started = datetime.strptime(started_at, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
    call = RecordedCall(1, 1, started, path, duration_s=None if duration_ms is None else duration_ms / 1000,
                        status_code=status_code, status_message=status_message, outcome=Outcome(outcome),
                        request_bytes=request_bytes)  # fmt: skip
    return StoredCall(1, 1, call, dict(ids))


def test_line_shape() -> None:
    row = {"started_at": "2026-11-23 23:25:01.123", "duration_ms": 12.345,
           "path": "/runtime.v1.RuntimeService/StartContainer", "status_code": 5, "status_message": "gone",
           "outcome": "completed", "request_bytes": 70, "pod_sandbox_id": "a" * 64, "pod_name": "web-0",
           "pod_namespace": "shop", "container_id": "c" * 64, "image": None}  # fmt: skip
    assert format_line(_stored(**row)) == (  # type: ignore[arg-type]
        "23:25:01.123    12.3ms NOT_FOUND         v1.RuntimeService/StartContainer     "
        'pod=aaaaaaaaaaaa(shop/web-0) ctr=cccccccccccc req=70 resp=0 "gone"\n'
    )
    cancelled = dict(row, status_code=None, outcome="cancelled", duration_ms=None, status_message=None,
                     pod_sandbox_id=None, container_id=None, path="/containerd.services.events.v1.Events/Subscribe")
    assert format_line(_stored(**cancelled)) == (  # type: ignore[arg-type]
        "23:25:01.123         - cancelled         containerd.services.events.v1.Events/Subscribe "
        "pod=shop/web-0 req=70 resp=0\n"
    )


def test_last_n_then_filters_and_jsonl(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.db"
    t = time.time() - 3600
    calls = [version(i, t + i) for i in range(10)]
    calls += [make_call("ListContainers", {}, {}, started=t + 20), failing(30)]
    calls.append(make_call("GetContainerEvents", {}, None, started=t + 40, duration_ms=None, status=None,
                           outcome=Outcome.CANCELLED))  # fmt: skip
    record(path, calls)
    tail = Tail("--db", str(path), "-n", "3")
    tails.append(tail)
    assert [line.split()[3].rpartition("/")[2] for line in tail.take(3)] == [
        "ListContainers", "ContainerStatus", "GetContainerEvents"]  # fmt: skip
    assert tail.quiet(0.5)
    tail = Tail("--db", str(path), "-n", "100", "--errors")
    tails.append(tail)
    errors = tail.take(2)
    assert "NOT_FOUND" in errors[0] and errors[1].split()[1:3] == ["-", "cancelled"]
    tail = Tail("--db", str(path), "-n", "100", "--method", "List*", "--format", "jsonl")
    tails.append(tail)
    (obj,) = [json.loads(line) for line in tail.take(1)]
    assert obj["method"] == "ListContainers" and obj["path"] == "/runtime.v1.RuntimeService/ListContainers"
    assert obj["status_name"] == "OK" and obj["id"] == 11
    for pattern in ("v1.RuntimeService/Version", "runtime.v1.RuntimeService/Ver*"):
        tail = Tail("--db", str(path), "-n", "2", "--method", pattern)
        tails.append(tail)
        assert all("Version" in line for line in tail.take(2))
    for each in tails:
        assert each.quiet(0.05) and each.stop(signal.SIGINT) == 0  # Ctrl-C: exit 0 too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]  # stopped file: nothing created


def test_since_shows_recent_calls_first(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.db"
    now = time.time()
    record(path, [version(1, now - 600), version(2, now - 120), version(3, now - 30)])
    tail = Tail("--db", str(path), "--since", "5m", "--format", "jsonl")
    tails.append(tail)
    assert [json.loads(line)["id"] for line in tail.take(2)] == [2, 3]
    assert tail.quiet(0.5)
    tail = Tail("--db", str(path), "--since", "5m", "-n", "1", "--format", "jsonl")
    tails.append(tail)
    assert [json.loads(line)["id"] for line in tail.take(1)] == [3]


def test_follows_a_proxy_that_starts_and_stops(tmp_path: Path, tails: list[Tail]) -> None:
    """Started on a stopped recording (read immutable), it notices the proxy start writing
    (the -wal appears), then stop (the -wal goes, the main file changes), then start again."""
    path = tmp_path / "calls.db"
    record(path, [version(0)])
    tail = Tail("--db", str(path), "-n", "1")
    tails.append(tail)
    tail.take(1)
    for run in range(2):
        recorder = Recorder(path)
        recorder.start()
        try:
            recorder.submit(version(1))
            recorder.submit(failing(2))
            lines = tail.take(2)
        finally:
            recorder.close()
        assert "Version" in lines[0] and "NOT_FOUND" in lines[1], (run, lines)
    assert tail.quiet()
    assert tail.stop() == 0


def test_a_removed_file_stops_it_with_one_line(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.db"
    record(path, [version(0)])
    tail = Tail("--db", str(path), "-n", "1")
    tails.append(tail)
    tail.take(1)
    path.unlink()
    assert tail.proc.wait(timeout=5) == 2
    assert tail.stderr() == f"cri-proxy: error: {path} was removed\n"


def test_a_replaced_file_stops_it_with_one_line(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.db"
    record(path, [version(0)])
    record(tmp_path / "new.db", [version(1)])
    tail = Tail("--db", str(path), "-n", "1")
    tails.append(tail)
    tail.take(1)
    before = snapshot(tmp_path)
    (tmp_path / "new.db").rename(path)
    assert tail.proc.wait(timeout=5) == 2
    assert tail.stderr() == f"cri-proxy: error: {path} was replaced by another file\n"
    assert set(before) == {"calls.db", "new.db"}


def test_ids_starting_again_after_every_call_was_pruned(tmp_path: Path, tails: list[Tail]) -> None:
    path = tmp_path / "calls.db"
    record(path, [version(i) for i in range(3)])
    tail = Tail("--db", str(path), "-n", "1", "--format", "jsonl")
    tails.append(tail)
    assert json.loads(tail.take(1)[0])["id"] == 3
    conn = sqlite3.connect(path)  # what retention does when every call is older than the limit
    with conn:
        conn.execute("DELETE FROM messages")
        conn.execute("DELETE FROM calls")
    conn.close()
    record(path, [failing(1)])
    (line,) = tail.take(1)
    assert (json.loads(line)["id"], json.loads(line)["status_name"]) == (1, "NOT_FOUND")
    assert tail.stop() == 0


def test_failing_exec_probes_show_their_exit_code(probe_recording: Path) -> None:
    recording = Recording(probe_recording)
    try:
        _top, shown = first_rows(recording, Filters(method_glob="ExecSync"), last=10)
        execs = list(shown)
    finally:
        recording.close()
    assert [c.exit_code for c in execs] == list(EXITS)
    lines = [format_line(c) for c in execs]
    assert ["exit=" in line for line in lines] == [False, True, True]
    assert " OK exit=3 " in lines[1] and " OK exit=7 " in lines[2] and " OK " in lines[0]
    assert [json.loads(jsonl_line(c))["exit_code"] for c in execs] == list(EXITS)
