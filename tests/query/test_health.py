"""`cri-proxy health`: a failing exec probe recorded through the proxy shows as failing (exit
1, worst first, its evidence lists the failing calls); a healthy node exits 0."""

from __future__ import annotations

import json
import pathlib
import shlex
import time

import pytest

from tests.helpers.calls import record
from tests.helpers.cli import run_cli
from tests.helpers.health import assert_evidence_runs, health, relists

pytestmark = pytest.mark.timeout(60)


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
