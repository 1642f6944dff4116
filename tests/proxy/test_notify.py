"""sd_notify: datagrams on a real unix socket, by path and in the abstract namespace."""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
from collections.abc import Iterator

import pytest

from cri_proxy.proxy.notify import Notifier, socket_address, watchdog_interval

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def listener(sock_dir: pathlib.Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_dir / "notify"))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_messages_arrive_as_one_datagram_each(sock_dir: pathlib.Path, listener: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_dir / "notify")})
    notifier.ready("forwarding a to b")
    notifier.status("still forwarding")
    notifier.stopping()
    assert listener.recv(4096) == b"READY=1\nSTATUS=forwarding a to b"
    assert listener.recv(4096) == b"STATUS=still forwarding"
    assert listener.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_an_abstract_namespace_address() -> None:
    name = f"cri-proxy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(4096) == b"READY=1"
    assert socket_address("@x") == "\0x" and socket_address("/run/x") == "/run/x"


def test_without_a_socket_nothing_is_sent_and_nothing_fails(sock_dir: pathlib.Path) -> None:
    assert not Notifier({}).enabled and not Notifier({}).send("READY=1")
    broken = Notifier({"NOTIFY_SOCKET": str(sock_dir / "nobody")})
    assert broken.enabled and not broken.send("READY=1")  # logged, never raised


def test_watchdog_interval() -> None:
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}, pid) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(pid)}, pid) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(pid + 1)}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({}, pid) is None
    assert Notifier({"WATCHDOG_USEC": "20000000"}).interval is None  # no socket, no watchdog


async def test_watchdog_pings_until_stopped(sock_dir: pathlib.Path, listener: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_dir / "notify"), "WATCHDOG_USEC": "100000"})
    assert notifier.interval == 0.05
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    notifier.start_watchdog()
    try:
        for _ in range(3):
            assert await asyncio.wait_for(loop.sock_recv(listener, 4096), 5) == b"WATCHDOG=1"
    finally:
        await notifier.stop_watchdog()
    assert notifier._watchdog is None
