"""`cri-proxy demo`, the README's first command: no runtime, no root, a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest


@pytest.mark.timeout(60)
def test_demo_relays_a_kubelet_round_and_cleans_up() -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cri_proxy", "demo"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    lines = result.stdout.splitlines()
    calls = [line for line in lines if " ms  " in line]
    assert len(calls) == 21
    assert any("RunPodSandbox" in line and line.endswith("OK") for line in calls)
    assert any("ContainerStatus (unknown id)" in line and "NOT_FOUND" in line for line in calls)
    assert "21 calls relayed, 1 answered with an error" in result.stdout
    folder = lines[0].split("unix://", 1)[1].rsplit("/", 1)[0]
    assert not os.path.exists(folder)  # its sockets and folder are gone
    assert "Traceback" not in result.stderr
