"""Running the real `cri-proxy` command line from tests, and reading what it prints: in this
process (`run_cli`, most tests) or as a process of its own (`run_cli_process`, `Tail`: the
entry point, exit statuses, signals)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from typer.testing import CliRunner

from cri_proxy.cli.app import app
from cri_proxy.model.call import RecordedCall
from cri_proxy.query import DB_ENV
from tests.conftest import ROOT
from tests.helpers.calls import (
    kubelet_second,
    lifecycle_calls,
)


def cli_argv(*args: str) -> list[str]:
    """The argv that runs `cri-proxy ARGS` (this checkout) as a process of its own."""
    return [sys.executable, "-m", "cri_proxy", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != DB_ENV}
    env.update(extra)
    return env


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Runs `cri-proxy ARGS` in this process (typer's CliRunner: the same app, parsing and
    runner as the real command, without a Python start-up per call) and returns what a
    process would have: exit status, stdout, stderr. `env` is the whole environment the
    command sees (default: this one without $CRI_PROXY_DB); stdin is `input`, else empty."""
    wanted = cli_env() if env is None else env
    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in wanted}
    overrides.update(wanted)
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args), input=input, env=overrides, prog_name="cri-proxy")
    stderr = result.stderr
    if result.exception is not None and result.exc_info is not None and not isinstance(result.exception, SystemExit):
        # A bug escaped the command: show its traceback as a process would have.
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["cri-proxy", *args], result.exit_code, result.stdout, stderr)


def run_cli_process(*args: str, input: str | None = None, env: dict[str, str] | None = None,
                    timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Runs `python -m cri_proxy ARGS` as a real process: for the tests of the entry point,
    exit statuses and signals themselves."""
    return subprocess.run(
        cli_argv(*args), input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, text=True, cwd=ROOT, env=env or cli_env(), timeout=timeout,
    )  # fmt: skip


def incident_calls() -> list[RecordedCall]:
    """A pod's lifecycle (with failures) among a few seconds of an idle kubelet's polling."""
    calls = lifecycle_calls()
    for second in range(3):
        calls += kubelet_second(second, pods=3)
    return calls


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int, str]]:
    """Every file of the folder: size, mtime (ns) and SHA-256."""
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.iterdir()) if p.name not in skip
    }  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Asserts the command failed with exit 2 and one `cri-proxy: error:` line; returns it."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cri-proxy: error: "), result.stderr
    return lines[0]


class Tail:
    """`cri-proxy tail ARGS` running; its stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(cli_argv("tail", *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli_env())  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def take(self, n: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < n:
            try:
                got.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            except queue.Empty:
                raise AssertionError(f"got {len(got)} of {n} lines: {got}; stderr: {self.stderr()}") from None
        return got

    def quiet(self, seconds: float = 0.6) -> bool:
        """True when no line arrives for that long."""
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected line: {line}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=10)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()
