"""`cri-proxy run` under systemd (Type=notify): readiness only once listening, status, the
watchdog and stopping, told on a real datagram socket standing in for $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket

import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from tests.helpers.proxyproc import ProxyProcess, socket_answers
from tests.helpers.stall import StallingFront

pytestmark = pytest.mark.timeout(60)


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    async def next(self, timeout: float = 15) -> dict[str, str]:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), timeout)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": str(self.path), **extra}


async def test_systemd_is_told_ready_once_listening_then_watchdog_then_stopping(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1")
    notify = NotifySocket(sock_dir / "notify")
    proxy = ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", env=notify.env(WATCHDOG_USEC="200000"))
    try:
        proxy.start(wait=False)
        first = await notify.next()
        accepts = socket_answers(sock_dir / "p.sock")  # at once: READY=1 must mean "accepting now"
        assert first.get("READY") == "1" and accepts
        assert first["STATUS"] == (f"forwarding unix://{sock_dir}/p.sock to unix://{sock_dir}/rt.sock; "
                                   "the runtime speaks CRI v1")
        assert [await notify.next() for _ in range(3)] == [{"WATCHDOG": "1"}] * 3
        proxy.signal(signal.SIGTERM)
        while "STOPPING" not in (message := await notify.next()):
            assert message == {"WATCHDOG": "1"}
        assert message["STOPPING"] == "1"
        assert await proxy.astop(20.0, False) == 0
    finally:
        proxy.__exit__(None, None, None)
        notify.sock.close()
        await runtime.stop(0)


async def test_an_unreachable_runtime_does_not_hold_readiness_back(sock_dir: pathlib.Path) -> None:
    hung = await StallingFront(sock_dir / "rt.sock").start()
    notify = NotifySocket(sock_dir / "notify")
    proxy = ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", env=notify.env())
    try:
        proxy.start(wait=False)
        ready = await notify.next()
        assert ready.get("READY") == "1" and socket_answers(sock_dir / "p.sock")
        assert "runtime not answering: " in ready["STATUS"] and "gave no answer" in ready["STATUS"]
        await hung.close()
        runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1")
        try:
            assert (await notify.next(30))["STATUS"].endswith("; the runtime speaks CRI v1")  # and no trouble
        finally:
            await runtime.stop(0)
    finally:
        proxy.__exit__(None, None, None)
        notify.sock.close()
        await hung.close()
