"""`cri-proxy demo`, the README's first command: no runtime, no root, a few seconds."""

from __future__ import annotations

import os
import pathlib
import shlex
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.helpers.cli import run_cli


@pytest.mark.timeout(60)
def test_demo_relays_records_and_suggests_queries(tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cri_proxy", "demo"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    lines = result.stdout.splitlines()
    calls = [line for line in lines if " ms  " in line]
    assert len(calls) == 39
    assert any("RunPodSandbox" in line and line.endswith("OK") for line in calls)
    assert any("ContainerStatus (unknown id)" in line and "NOT_FOUND" in line for line in calls)
    assert [line.split()[-2:] for line in calls if "ExecSync (failing probe)" in line] == [["OK", "exit=3"]]
    assert "39 recorded to cri-proxy-demo.db (session 1), 0 lost." in result.stdout
    folder = lines[0].split("unix://", 1)[1].rsplit("/", 1)[0]
    assert not os.path.exists(folder)  # its sockets and folder are gone
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cri-proxy-demo.db"]  # no -wal/-shm left behind
    with sqlite3.connect(tmp_path / "cri-proxy-demo.db") as conn:
        assert conn.execute("SELECT count(*), sum(status_name = 'NOT_FOUND') FROM calls").fetchone() == (39, 1)
        assert conn.execute("SELECT kind, exit_code FROM problems WHERE method = 'ExecSync'").fetchall() == [
            ("nonzero_exit", 3)]
    # the queries it suggests run as printed
    suggested = [line.strip() for line in lines if line.strip().startswith("cri-proxy query")]
    assert len(suggested) == 3
    for command in suggested:  # in this process: the demo itself already ran the real entry point
        run = run_cli(*shlex.split(command.removeprefix("cri-proxy ")), cwd=tmp_path)
        assert run.returncode == 0 and len(run.stdout.splitlines()) >= 3, (command, run.stderr)
