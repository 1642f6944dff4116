"""cri_proxy/proxy/relaypair.py, on a real relay before a real echo backend: a drained connection
says GOAWAY and closes once no call is open; a failed one lets its upstream go, says GOAWAY
with its error code, and closes; with metrics alone recorded, the lean walk is the relay's."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable

import pytest
from hpack import Encoder

from cri_proxy.h2 import frames as h2
from cri_proxy.model.options import RecordConfig, TelemetryConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.lean import LeanWalker
from cri_proxy.proxy.recorder_link import RecorderProcess
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.tap import ConnectionInfo
from tests.helpers.backend import start_echo
from tests.helpers.rawh2 import RawClient, drain, grpc_message, hello, opening, request_headers
from tests.helpers.scrape import Samples, get, samples, total

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def relay(sock_dir: pathlib.Path) -> AsyncIterator[RelayServer]:
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    server = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock")
    await server.start()
    yield server
    await server.stop(0)
    await backend.stop(0)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def connected(relay: RelayServer, sock_dir: pathlib.Path) -> tuple[RawClient, Connection]:
    client = RawClient(str(sock_dir / "p.sock"))
    client.send(hello())
    await until(lambda: any(conn.upstream is not None for conn in relay.connections))
    [conn] = relay.connections
    return client, conn


async def test_a_drained_connection_says_goaway_then_closes(relay: RelayServer, sock_dir: pathlib.Path) -> None:
    client, conn = await connected(relay, sock_dir)
    with client:
        conn.drain(settle=0.05)
        reply = await asyncio.to_thread(client.read_reply, -1)
        assert reply.goaway == 0  # NO_ERROR: open no new calls
        await until(lambda: not relay.connections)
        assert conn.closing


async def test_a_failed_connection_says_why_in_its_goaway(relay: RelayServer, sock_dir: pathlib.Path) -> None:
    client, conn = await connected(relay, sock_dir)
    with client:
        conn.fail(h2.ERR_ENHANCE_YOUR_CALM, "too many pings")
        assert conn.closing and conn.upstream is None  # the upstream is let go at once
        reply = await asyncio.to_thread(drain, client)
        assert reply.goaway == h2.ERR_ENHANCE_YOUR_CALM
        await until(lambda: not relay.connections)


async def test_with_metrics_alone_the_lean_walk_follows_the_calls(sock_dir: pathlib.Path) -> None:
    """`run --metrics-listen` alone: the tap's lean walk is the relay's walk of the upstream's
    bytes (no `track` besides it). A 60 KB reply in several frames ends its call for the relay (a
    drain then closes the connection) and reaches the recorder's metrics byte for byte."""
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    metrics = f"unix://{sock_dir}/m.sock"
    recorder = RecorderProcess(RecordConfig(db=None, telemetry=TelemetryConfig(metrics_listen=metrics)),
                               SessionInfo())
    await asyncio.to_thread(recorder.start)
    server = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", tap=recorder)
    await server.start()
    try:
        client = RawClient(str(sock_dir / "p.sock"))
        with client:
            head, _ = opening("/test.Echo/Big")
            client.send(head + h2.frame(h2.DATA, h2.FLAG_END_STREAM, 1, grpc_message(b"60000")))
            reply = await asyncio.to_thread(client.read_reply)
            assert reply.grpc_status == "0" and len(reply.data) == 60_005
            [conn] = server.connections
            assert conn.lean is not None and conn.s2c.walked > 60_000
            await until(lambda: not conn.open_streams)
            found: Samples = {}

            def counted() -> bool:
                nonlocal found
                found = samples(get(metrics, "/metrics")[1])
                return total(found, "cri_proxy_calls_total") >= 1
            await until(lambda: counted())
            assert total(found, "cri_proxy_response_bytes_total") == 60_000
            conn.drain(settle=0.05)
            assert (await asyncio.to_thread(client.read_reply, -1)).goaway == 0
            await until(lambda: not server.connections)
    finally:
        await server.stop(0)
        await recorder.aclose()
        await backend.stop(0)


class _BrokenWayOut:
    """A tap offering the lean walk whose way out fails (a bug in a tap must not break forwarding)."""

    def __init__(self) -> None:
        self.closed_with: list[str | None] = []
        self.lean = (LeanWalker(), self._fail)

    def _fail(self, data: bytes, boundary: bool) -> None:
        raise RuntimeError("broken way out")

    def open(self, info: ConnectionInfo) -> _BrokenWayOut:
        return self

    def client_bytes(self, data: bytes, boundary: bool) -> None:
        pass

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        pass

    def upstream_changed(self, upstream: str) -> None:
        pass

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        pass

    def closed(self, reason: str | None) -> None:
        self.closed_with.append(reason)


async def test_a_lean_walk_that_fails_leaves_the_connection_relaying_and_following_its_calls(
        sock_dir: pathlib.Path) -> None:
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    tap = _BrokenWayOut()
    server = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", tap=tap)
    await server.start()
    try:
        with RawClient(str(sock_dir / "p.sock")) as client:
            encoder = Encoder()
            head, tail = opening("/test.Echo/Unary", 1, encoder)
            client.send(head + tail)
            first = await asyncio.to_thread(client.read_reply)
            [conn] = server.connections
            assert first.grpc_status == "0" and tap.closed_with == ["the tap failed"] and conn.tap is None
            block = encoder.encode(request_headers("/test.Echo/Unary"))
            client.send(h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, 3, block)
                        + h2.frame(h2.DATA, h2.FLAG_END_STREAM, 3, grpc_message(b"again")))
            second = await asyncio.to_thread(client.read_reply, 3)
            assert second.grpc_status == "0" and second.data == grpc_message(b"again")
            await until(lambda: not conn.open_streams)  # both calls ended for the relay, the walk gone plain
            conn.drain(settle=0.05)
            assert (await asyncio.to_thread(client.read_reply, -1)).goaway == 0
            await until(lambda: not server.connections)
    finally:
        await server.stop(0)
        await backend.stop(0)
