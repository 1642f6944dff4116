"""The recorded checks of `cri-proxy health`: the PLEG limit (a gap between relists past
3 minutes), a call past the kubelet's deadline, worst first, each with evidence that runs."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.helpers.calls import make_call, record
from tests.helpers.health import assert_evidence_runs, health, relists

pytestmark = pytest.mark.timeout(60)


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
