"""`cri-proxy stats` on recordings the recorder wrote: the per-method numbers agree with the
`method_stats` view, lost calls are shown (table, JSON, CSV, and a warning line), and
--session and --since select what is counted."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store.db import utc_text
from tests.helpers.calls import make_call, record, rows, wait_for
from tests.helpers.cli import incident_calls, one_error_line, run_cli
from tests.helpers.probes import EXITS

pytestmark = pytest.mark.timeout(60)


def stats_json(path: Path, *args: str) -> dict[str, list[dict[str, Any]]]:
    result = run_cli("stats", "--db", str(path), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    got: dict[str, list[dict[str, Any]]] = json.loads(result.stdout)
    return got


def timed_calls(start: float) -> list[RecordedCall]:
    """100 ListContainers taking 1..100 ms (two failed), 3 PullImage, one never finished."""
    calls = [make_call("ListContainers", {}, {"containers": []}, started=start + i / 100, duration_ms=float(i + 1),
                       status=14 if i in (10, 20) else 0) for i in range(100)]  # fmt: skip
    calls += [make_call("PullImage", {"image": {"image": "nginx:1"}}, {"image_ref": "sha256:ab"},
                        started=start + 2 + i, duration_ms=1000.0 * (i + 1)) for i in range(3)]  # fmt: skip
    calls.append(make_call("Version", {}, None, started=start + 6, duration_ms=None, status=None))
    return calls


def test_methods_agree_with_the_method_stats_view(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, timed_calls(time.time() - 60) + incident_calls())
    got = {r["method"]: r for r in stats_json(path)["methods"]}
    view = rows(path, "SELECT service, method, calls, errors, error_rate, p50_ms, p95_ms, p99_ms, max_ms "
                      "FROM method_stats")  # fmt: skip
    assert len(got) == len(view)
    for service, method, *numbers in view:
        mine = got[f"{service.removeprefix('runtime.')}/{method}"]
        assert [mine[k] for k in ("calls", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms", "max_ms")] == numbers
    lc = got["v1.RuntimeService/ListContainers"]  # 100 timed ones plus incident_calls' four
    assert (lc["calls"], lc["errors"]) == (104, 2)
    sums = rows(path, "SELECT SUM(request_bytes), SUM(response_bytes) FROM calls WHERE method = 'ListContainers'")
    assert (lc["request_bytes"], lc["response_bytes"]) == sums[0]
    pull = got["v1.ImageService/PullImage"]
    assert (pull["p50_ms"], pull["p99_ms"], pull["max_ms"]) == (2000.0, 3000.0, 3000.0)
    assert got["v1.RuntimeService/Version"]["errors"] >= 1  # never got a status: failed
    methods = list(got)
    assert methods[0] == "v1.RuntimeService/ListContainers"  # busiest first


def lossy_recording(path: Path) -> None:
    """A session that lost 15 calls to a full queue (as in the recorder's own tests)."""
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=10, flush_interval_s=0.05))
    for i in range(25):  # not started yet: nothing drains the queue
        recorder.submit(make_call("Version", {"version": f"v{i}"}, {}, started=time.time()))
    recorder.start()
    wait_for(lambda: recorder.stats.queued == 0)
    recorder.close()


def test_lost_calls_are_shown(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    lossy_recording(path)
    got = stats_json(path)
    ((session,),) = [got["sessions"]]
    assert (session["calls_recorded"], session["calls_lost"], session["loss_episodes"], session["calls_in_file"]) == (10, 15, 1, 10)
    ((loss,),) = [got["losses"]]
    assert (loss["session"], loss["reason"], loss["calls_lost"]) == (1, "queue full", 15)

    table = run_cli("stats", "--db", str(path))
    assert table.returncode == 0
    sections = table.stdout.split("\n\n")
    assert [s.splitlines()[0] for s in sections] == ["methods:", "sessions:", "losses:"]
    header, _rule, line = sections[1].splitlines()[1:]
    end = header.index("calls_lost") + len("calls_lost")  # numbers are right-aligned under their header
    assert line[:end].split()[-1] == "15"
    assert "queue full" in sections[2] and sections[2].rstrip().endswith("15")
    assert table.stderr == ("cri-proxy: warning: 15 calls were seen but NOT recorded (session 1: 15); "
                            "see the losses table\n")  # fmt: skip

    as_csv = list(csv.DictReader(io.StringIO(run_cli("stats", "--db", str(path), "--format", "csv").stdout)))
    assert [r["calls_lost"] for r in as_csv if r["section"] == "sessions"] == ["15"]
    assert [r["reason"] for r in as_csv if r["section"] == "losses"] == ["queue full"]
    jsonl = [json.loads(line) for line in run_cli("stats", "--db", str(path), "--format", "jsonl").stdout.splitlines()]
    assert {r["section"] for r in jsonl} == {"methods", "sessions", "losses"}


def test_no_loss_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, incident_calls())
    result = run_cli("stats", "--db", str(path))
    assert result.returncode == 0 and result.stderr == ""
    assert "losses:\n  (none)\n" in result.stdout


def test_session_and_since_select_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    now = time.time()
    record(path, [make_call("Version", {}, {}, started=now - 7200), make_call("Version", {}, {}, started=now - 60)])
    lossy_recording(path)  # session 2: ten Versions now, 15 lost
    assert [r["calls"] for r in stats_json(path)["methods"]] == [12]
    s1 = stats_json(path, "--session", "1")
    assert [r["calls"] for r in s1["methods"]] == [2] and [s["session"] for s in s1["sessions"]] == [1]
    assert s1["losses"] == []
    recent = stats_json(path, "--since", "10m")
    assert [r["calls"] for r in recent["methods"]] == [11]
    assert [(s["session"], s["calls_lost"]) for s in recent["sessions"]] == [(1, 0), (2, 15)]  # both ran since
    conn = sqlite3.connect(path)  # an edge case by hand: session 1 ended an hour ago
    with conn:
        conn.execute("UPDATE sessions SET ended_at = ? WHERE id = 1", (utc_text(now - 3600),))
    conn.close()
    assert [s["session"] for s in stats_json(path, "--since", "10m")["sessions"]] == [2]
    assert stats_json(path, "--since", "2020-01-01 00:00")["methods"][0]["calls"] == 12
    assert "--since 'soon'" in one_error_line(run_cli("stats", "--db", str(path), "--since", "soon"))


def test_a_session_the_recording_lacks_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, incident_calls())
    assert "no session 99 in the recording" in one_error_line(run_cli("stats", "--db", str(path), "--session", "99"))
    assert run_cli("stats", "--db", str(path), "--session", "1").returncode == 0


def test_live_session_counts_losses_while_running(tmp_path: Path) -> None:
    """The proxy's counters are written with every batch: a running session's loss is visible."""
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=5, flush_interval_s=0.05))
    for i in range(8):
        recorder.submit(make_call("Version", {}, {}, started=time.time()))
    recorder.start()
    try:
        wait_for(lambda: recorder.stats.recorded == 5)
        recorder.submit(make_call("Version", {}, {}, started=time.time()))  # a batch after the drain
        wait_for(lambda: rows(path, "SELECT calls_lost FROM sessions") == [(3,)])
        (session,) = stats_json(path)["sessions"]
        assert (session["calls_lost"], session["ended_at"]) == (3, None)
    finally:
        recorder.close()


def test_nonzero_exits_are_counted_per_method(probe_recording: Path) -> None:
    got = {r["method"]: r for r in stats_json(probe_recording)["methods"]}
    execs = got["v1.RuntimeService/ExecSync"]
    assert (execs["calls"], execs["errors"], execs["nonzero_exits"]) == (len(EXITS), 0, 2)
    assert got["v1.RuntimeService/ContainerStatus"]["errors"] == 1
    assert {r["nonzero_exits"] for m, r in got.items() if m != "v1.RuntimeService/ExecSync"} == {0}
