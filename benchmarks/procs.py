"""Child processes that never outlive the benchmark, and the measures taken of them.

Every process the driver starts goes through `Children`, which stops them all on
exit, Ctrl-C included; each child also asks the kernel for SIGTERM should the
driver die without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Children:
    """The processes started so far; all are stopped when the `with` block ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}

    def start(self, argv: list[str], log: Path | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = log.open("wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, cwd=cwd,
                                env=env)
        if log:
            out.close()  # type: ignore[union-attr]  # the child holds its own copy
        self._procs.append(proc)
        if log:
            self._logs[proc.pid] = log
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def check_alive(self) -> None:
        """Raise if a process that should still run (every one started and not stopped) has exited."""
        for proc in self._procs:
            if proc.poll() is not None:
                log = self._logs.get(proc.pid)
                tail = f":\n{log_tail(log)}" if log else ""
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}{tail}")

    def __enter__(self) -> Children:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    """Return once a unix socket at `path` accepts; fail if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log_tail(log)}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                time.sleep(0.02)
    raise RuntimeError(f"{path} did not accept within {timeout:.0f}s:\n{log_tail(log)}")


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants (nginx: master and workers)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def peak_rss_mb(procs: list[psutil.Process]) -> float:
    """Sum of each process's lifetime peak resident set (VmHWM), in MB."""
    total_kb = 0
    for proc in procs:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def usage(pid: int) -> tuple[float, float, int]:
    """(user s, system s, context switches of all its threads) of a live process."""
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                switches += int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, switches
