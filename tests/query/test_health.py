"""`cri-proxy health`: a failing exec probe recorded through the proxy, the PLEG limit, slow
calls, error bursts, lost calls and upstream outages each give their finding, worst first,
with evidence that runs; a healthy node exits 0, an unhealthy one 1."""

from __future__ import annotations

import json
import pathlib
import shlex
import time
from typing import Any

import pytest

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import make_call, record, wait_for
from tests.helpers.cli import run_cli
from tests.helpers.probes import probe_recording  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(60)


def health(db: pathlib.Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("health", "--db", str(db), "--format", "json", *args)
    assert result.returncode in (0, 1), result.stderr
    got: dict[str, Any] = json.loads(result.stdout)
    assert got["unhealthy"] == (result.returncode == 1)
    return result.returncode, got


def relists(start: float, seconds: int, skip: range = range(0)) -> list[RecordedCall]:
    """The kubelet's PLEG: ListPodSandbox then ListContainers every second (not in `skip`)."""
    calls = []
    for s in range(seconds):
        if s in skip:
            continue
        calls += [make_call("ListPodSandbox", {}, {}, started=start + s, duration_ms=2.0, stream_id=4 * s + 1),
                  make_call("ListContainers", {}, {}, started=start + s + 0.003, duration_ms=3.0,
                            stream_id=4 * s + 3)]  # fmt: skip
    return calls


def assert_evidence_runs(db: pathlib.Path, findings: list[dict[str, Any]]) -> None:
    for finding in findings:
        argv = shlex.split(finding["evidence"])
        assert argv[:2] == ["cri-proxy", "query"], finding
        result = run_cli(*argv[1:], "--db", str(db))
        assert result.returncode == 0, (finding, result.stderr)


def test_a_failing_exec_probe_recorded_through_the_proxy(probe_recording: pathlib.Path) -> None:
    code, got = health(probe_recording)
    assert code == 1
    (probe,) = [f for f in got["findings"] if f["kind"] == "failing_probe"]
    assert probe["severity"] == "warning"
    assert "shop/web container app: 2 exec probes exited non-zero (exit 3, 7)" in probe["summary"]
    assert got["findings"][0]["severity"] == "warning"  # worst first: nothing here is critical
    result = run_cli(*shlex.split(probe["evidence"])[1:], "--db", str(probe_recording), "--format", "json")
    assert sorted(r["exit_code"] for r in json.loads(result.stdout)) == [3, 7]
    assert_evidence_runs(probe_recording, got["findings"])
    text = run_cli("health", "--db", str(probe_recording))
    assert text.returncode == 1 and text.stdout.startswith("UNHEALTHY: ")
    assert any(line.startswith("warning   failing probe: shop/web") for line in text.stdout.splitlines())


def test_a_healthy_node_exits_0(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    record(path, relists(time.time() - 120, 60))
    code, got = health(path)
    assert code == 0
    assert [f["severity"] for f in got["findings"]] == ["info"]
    assert "60 relists, every 1.00s (median)" in got["findings"][0]["summary"]


def test_the_pleg_limit_slow_calls_and_an_error_burst(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    start = time.time() - 900
    calls = relists(start, 600, skip=range(100, 300))  # 201 s (99 to 300) without a relist: past 3 minutes
    calls.append(make_call("StopContainer", {"container_id": "c1"}, {}, started=start + 400, duration_ms=150_000.0))
    calls += [make_call("ContainerStatus", {"container_id": "c9"}, None, status=5, started=start + 500 + i / 10,
                        stream_id=1001 + 2 * i) for i in range(12)]  # fmt: skip
    record(path, calls)
    code, got = health(path, "--since", "1h")
    assert code == 1
    kinds = [(f["severity"], f["kind"]) for f in got["findings"]]
    assert kinds[:2] == [("critical", "relist"), ("critical", "slow_call")]  # 201 s gap > 150 s call
    assert "went without a relist 3m21s" in got["findings"][0]["summary"]
    assert "StopContainer c1 took 2m30s (past the kubelet's 2m deadline)" in got["findings"][1]["summary"]
    (burst,) = [f for f in got["findings"] if f["kind"] == "error_burst"]
    assert burst["severity"] == "warning" and "12 failed calls" in burst["summary"]
    assert "ContainerStatus NOT_FOUND ×12" in burst["summary"]
    assert_evidence_runs(path, got["findings"])
    assert health(path, "--since", "1m")[1]["findings"][0]["kind"] == "relist"  # the window: only the end


def test_lost_calls_and_an_upstream_outage(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    start = time.time() - 300
    down = [make_call("Version", {}, None, status=14, message="connection refused", started=start + i,
                      stream_id=2 * i + 1) for i in range(5)]  # fmt: skip
    down.append(make_call("ListImages", {}, None, status=None, outcome=Outcome.CONNECTION_CLOSED, started=start + 6))
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=3, flush_interval_s=0.05))
    for call in down + relists(start + 100, 10):  # not started yet: the queue overflows
        recorder.submit(call)
    recorder.start()
    wait_for(lambda: recorder.stats.queued == 0)
    recorder.close()
    code, got = health(path, "--since", "1h")
    assert code == 1
    (lost,) = [f for f in got["findings"] if f["kind"] == "losses"]
    assert "calls NOT recorded (queue full)" in lost["summary"]
    assert_evidence_runs(path, got["findings"])


def test_an_unreachable_upstream_is_an_outage(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    start = time.time() - 300
    calls = [make_call("Version", {}, None, status=14, message="connection refused", started=start + i * 10,
                       stream_id=2 * i + 1) for i in range(8)]  # fmt: skip
    record(path, calls)
    _, got = health(path, "--since", "1h")
    (outage,) = [f for f in got["findings"] if f["kind"] == "upstream"]
    assert outage["severity"] == "critical"  # 70 s of it
    assert "8 calls UNAVAILABLE or cut off" in outage["summary"] and "for 1m10s" in outage["summary"]
