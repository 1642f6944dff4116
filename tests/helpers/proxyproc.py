"""Run `cri-proxy run` as a real subprocess for tests, and wait for its socket to answer."""

from __future__ import annotations

import asyncio
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType


def socket_answers(path: pathlib.Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


class ProxyProcess:
    """`python -m cri_proxy run ...` with its stderr captured in a file."""

    def __init__(self, listen: pathlib.Path, runtime: pathlib.Path, *extra: str, log: pathlib.Path | None = None,
                 env: dict[str, str] | None = None, nofile: int | None = None) -> None:
        self.listen = listen
        self.env = env  # the whole environment of the process (None: this one's)
        self.nofile = nofile  # its RLIMIT_NOFILE (soft and hard), when given
        self.log_path = log or listen.with_suffix(".log")
        self.argv = [sys.executable, "-m", "cri_proxy", "run", "--listen", f"unix://{listen}",
                     "--runtime-endpoint", f"unix://{runtime}", *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 15.0) -> ProxyProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stderr=log, stdout=log, stdin=subprocess.DEVNULL, env=self.env)
        if self.nofile is not None:
            # Set from here, not by a preexec_fn: forking a process that runs grpc threads and then
            # running Python in the child can abort it in grpc's fork handlers. The interpreter
            # is still starting up; the proxy opens its sockets long after.
            resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        if wait:
            deadline = time.monotonic() + timeout
            while not socket_answers(self.listen):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"cri-proxy exited with {self.proc.returncode}:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cri-proxy did not listen within {timeout}s:\n{self.log()}")
                time.sleep(0.02)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def await_log(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the proxy's log says `text` (it is written as things happen)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cri-proxy never logged {text!r} within {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.02)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 20.0, send: bool = True) -> int:
        """SIGTERM (unless `send` is False: one was sent already), then the exit status.

        SIGKILL and an error if it does not exit in time.
        """
        assert self.proc is not None
        if send and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"cri-proxy ignored SIGTERM for {timeout}s:\n{self.log()}") from None

    async def astart(self) -> ProxyProcess:
        """start() without blocking the event loop: servers of the test's own may need to answer
        the proxy meanwhile (it asks the runtime which CRI version it speaks before listening)."""
        return await asyncio.to_thread(self.start)

    async def astop(self, timeout: float = 20.0, send: bool = True) -> int:
        return await asyncio.to_thread(self.stop, timeout, send)

    def __enter__(self) -> ProxyProcess:
        return self.start()

    async def __aenter__(self) -> ProxyProcess:
        return await self.astart()

    async def __aexit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(typ, exc, tb)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def recorder_pid(proxy: ProxyProcess) -> int:
    """The pid of the proxy's recorder process (`cri-proxy run --db`)."""
    assert proxy.proc is not None
    children = pathlib.Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children").read_text().split()
    found = [int(pid) for pid in children
             if b"cri_proxy.recorder.worker" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(found) == 1, children
    return found[0]


async def wait_for_log(proxy: ProxyProcess, text: str, count: int = 1, timeout: float = 20.0) -> None:
    """Until the proxy's log holds `text` (at least `count` times)."""
    deadline = time.monotonic() + timeout
    while proxy.log().count(text) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in the proxy's log within {timeout}s:\n{proxy.log()}")
        await asyncio.sleep(0.02)
