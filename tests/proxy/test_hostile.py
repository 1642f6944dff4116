"""Hostile and broken clients: while each misbehaves, a well-behaved client on a connection of
its own keeps making calls through the same relay, and none of them fails; out of file
descriptors, the proxy says so once and recovers. (Floods through a recording proxy are in
tests/proxy/test_floodguard.py.)

Every scenario is bounded in count and time and runs on unix sockets, in a thread of its
own with blocking sockets (so it writes exactly what it means to, when it means to).
"""

from __future__ import annotations

import asyncio
import pathlib
import random
import socket
import threading
import time
from collections.abc import Callable

import psutil
import pytest
from hpack import Encoder

from cri_proxy.h2 import frames as h2
from tests.helpers.backend import channel, start_echo, unary
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.rawh2 import (
    RawClient,
    drain,
    grpc_message,
    hello,
    raw_frame,
    request_headers,
)

pytestmark = pytest.mark.timeout(60)

CALL = "/runtime.v1.RuntimeService/Version"


def _connect(path: pathlib.Path, timeout: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def _until_closed(sock: socket.socket) -> None:
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def random_bytes(path: pathlib.Path) -> None:
    rng = random.Random(1)
    for _ in range(50):
        with _connect(path) as sock:
            sock.sendall(rng.randbytes(rng.randrange(1, 4096)))
            _until_closed(sock)


def http1_request(path: pathlib.Path) -> None:
    for _ in range(50):
        with _connect(path) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            _until_closed(sock)


def truncated_frames(path: pathlib.Path) -> None:
    block = Encoder().encode(request_headers(CALL))
    whole = hello() + raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS, 1, block) + \
        raw_frame(h2.DATA, h2.FLAG_END_STREAM, 1, grpc_message(b"x"))
    for cut in range(len(h2.PREFACE), len(whole), 3):
        with _connect(path) as sock:
            sock.sendall(whole[:cut])  # then hang up in the middle of a frame


def ping_flood(path: pathlib.Path) -> None:
    with RawClient(str(path), timeout=5) as client:
        client.send(hello())
        ping = raw_frame(h2.PING, 0, 0, b"12345678")
        try:
            for _ in range(200):
                client.send(ping * 100)
        except OSError:
            pass  # the runtime may well hang up on such a client
        drain(client)


def slowloris(path: pathlib.Path) -> None:
    socks = [_connect(path) for _ in range(20)]
    try:
        for byte in hello()[:30]:  # a byte per round to each, never a whole request
            for sock in socks:
                sock.sendall(bytes([byte]))
            time.sleep(0.02)
    finally:
        for sock in socks:
            sock.close()


def vanishing_client(path: pathlib.Path) -> None:
    block = Encoder().encode(request_headers("/test.Echo/Hang"))
    for _ in range(50):
        with _connect(path) as sock:
            sock.sendall(hello() + raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS, 1, block)
                         + raw_frame(h2.DATA, h2.FLAG_END_STREAM, 1, grpc_message(b"")))
            sock.recv(9)  # the server's first frame: the call is open upstream; then gone


def many_held(path: pathlib.Path) -> None:
    socks = []
    try:
        for _ in range(300):
            sock = _connect(path)
            sock.sendall(hello())
            socks.append(sock)
        time.sleep(0.5)  # held open meanwhile
    finally:
        for sock in socks:
            sock.close()


SCENARIOS: list[Callable[[pathlib.Path], None]] = [
    random_bytes, http1_request, truncated_frames, ping_flood, slowloris, vanishing_client, many_held]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
async def test_a_well_behaved_client_is_served_meanwhile(relay_path: pathlib.Path,
                                                         scenario: Callable[[pathlib.Path], None]) -> None:
    done = threading.Event()

    def run() -> None:
        try:
            scenario(relay_path)
        finally:
            done.set()

    hostile = asyncio.ensure_future(asyncio.to_thread(run))
    answered = 0
    async with channel(f"unix://{relay_path}") as ch:
        while not done.is_set() or answered < 10:
            assert await unary(ch, CALL)(b"%d" % answered, timeout=5) == b"runtime:%d" % answered
            answered += 1
    await hostile


# File descriptors -------------------------------------------------------------------------
def _hold(path: pathlib.Path, count: int) -> list[socket.socket]:
    """`count` idle connections that said hello and wait, as a client between calls does."""
    held = []
    for _ in range(count):
        sock = _connect(path, timeout=10)
        sock.sendall(hello())
        held.append(sock)
    return held


def _attempt(path: pathlib.Path) -> str:
    """A new connection: "closed" at once (no fd for its upstream), or "served" (one came free)."""
    with _connect(path, timeout=10) as sock:
        try:
            sock.sendall(hello())
            return "served" if sock.recv(65536) else "closed"
        except (ConnectionResetError, BrokenPipeError):
            return "closed"  # a timeout is neither: the test fails


async def test_out_of_file_descriptors_the_proxy_says_so_once_and_recovers(sock_dir: pathlib.Path) -> None:
    # Issue 11: the fd limit. The listen socket stays, new connections fail fast (as against a
    # dead runtime: the client re-dials), and the first one after fds free up is served.
    runtime, _ = await start_echo(f"unix://{sock_dir}/rt.sock", "runtime")
    proxy = await ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", nofile=64).astart()
    held: list[socket.socket] = []
    try:
        held = await asyncio.to_thread(_hold, proxy.listen, 40)  # two fds each in the proxy: more than it has
        await proxy.await_log("out of file descriptors")
        assert proxy.proc is not None
        cpu = psutil.Process(proxy.proc.pid).cpu_times()
        attempts = [await asyncio.to_thread(_attempt, proxy.listen) for _ in range(50)]
        spent = psutil.Process(proxy.proc.pid).cpu_times()
        assert "closed" in attempts  # each one answered at once, either way
        assert spent.user + spent.system - cpu.user - cpu.system < 2.0  # no spinning on EMFILE
        for sock in held:
            sock.close()
        async with channel(f"unix://{proxy.listen}") as ch:
            assert await unary(ch, CALL)(b"back", timeout=5) == b"runtime:back"
        await proxy.await_log("file descriptors are available again")
        assert await proxy.astop() == 0
    finally:
        for sock in held:
            sock.close()
        proxy.__exit__(None, None, None)
        await runtime.stop(0)
    log = proxy.log()
    assert log.count("out of file descriptors") == 1 and "unreachable" not in log, log
    assert "Traceback" not in log


async def test_two_thousand_idle_connections_leave_calls_within_their_deadline(sock_dir: pathlib.Path) -> None:
    runtime, _ = await start_echo(f"unix://{sock_dir}/rt.sock", "runtime")
    proxy = await ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", nofile=4096 + 512).astart()
    held: list[socket.socket] = []
    try:
        held = await asyncio.to_thread(_hold, proxy.listen, 2000)
        async with channel(f"unix://{proxy.listen}") as ch:
            for i in range(20):
                assert await unary(ch, CALL)(b"%d" % i, timeout=5) == b"runtime:%d" % i
        assert all(sock.recv(9, socket.MSG_PEEK) for sock in held)  # each one relayed: the runtime's SETTINGS
        assert "out of file descriptors" not in proxy.log()
    finally:
        for sock in held:
            sock.close()
        proxy.__exit__(None, None, None)
        await runtime.stop(0)
