"""The relay carries every call shape exactly as a direct connection does (in-process relay, real sockets)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.connection import HIGH_WATER
from cri_proxy.proxy.server import BridgeRoute, RelayServer
from tests.helpers.backend import Seen, _same, channel, outcome, start_echo, unary
from tests.helpers.rawh2 import RawClient, opening, raw_frame

pytestmark = pytest.mark.timeout(30)


@dataclass
class Setup:
    direct: str
    proxied: str
    seen: Seen
    relay: RelayServer
    backend: grpc.aio.Server


@pytest.fixture
async def setup(sock_dir: pathlib.Path) -> AsyncIterator[Setup]:
    backend, seen = await start_echo(f"unix://{sock_dir}/up.sock")
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock")
    await relay.start()
    yield Setup(f"unix://{sock_dir}/up.sock", f"unix://{sock_dir}/p.sock", seen, relay, backend)
    await relay.stop(0)
    await backend.stop(0)


@pytest.mark.parametrize("method, request_bytes, metadata", [
    ("/test.Echo/Unary", b"hello", (("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff"))),
    ("/test.Echo/Unary", b"", ()),
    ("/test.Echo/Fail", b"NOT_FOUND:pod sandbox \"abc\" not found", ()),
    ("/test.Echo/Fail", "FAILED_PRECONDITION:ünïcode détails".encode(), ()),
    ("/test.Echo/Big", b"15728640", ()),  # a 15 MiB reply
    ("/no.Such/Service", b"x", ()),
    ("/containerd.services.version.v1.Version/Version", b"", ()),
])
async def test_unary_outcomes_match_direct(setup: Setup, method: str, request_bytes: bytes, metadata: Any) -> None:
    direct = await outcome(setup.direct, method, request_bytes, metadata=metadata)
    proxied = await outcome(setup.proxied, method, request_bytes, metadata=metadata)
    assert proxied == direct
    if method == "/test.Echo/Big":
        assert direct[0] == "ok" and len(direct[1]) == 15 << 20


async def test_streams_match_direct(setup: Setup) -> None:
    async def run(address: str) -> tuple[list[bytes], bytes, list[bytes]]:
        async with channel(address) as ch:
            server_stream = [m async for m in ch.unary_stream(
                "/test.Echo/ServerStream", request_serializer=_same, response_deserializer=_same)(b"50")]
            client_stream = await ch.stream_unary(
                "/test.Echo/ClientStream", request_serializer=_same, response_deserializer=_same)(
                iter([b"a", b"b", b"c"]))
            bidi = ch.stream_stream("/test.Echo/Bidi", request_serializer=_same, response_deserializer=_same)()
            answers = []
            for word in (b"x", b"y", b"z"):
                await bidi.write(word)
                answers.append(await bidi.read())
            await bidi.done_writing()
            return server_stream, client_stream, answers

    direct = await run(setup.direct)
    assert direct[0][-1] == b"message 49" and direct[1] == b"a|b|c" and direct[2] == [b"echo:x", b"echo:y", b"echo:z"]
    assert await run(setup.proxied) == direct


async def test_deadline_and_cancellation_reach_the_server(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "/test.Echo/Hang")(b"", timeout=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        call = unary(ch, "/test.Echo/Hang")(b"")
        await asyncio.sleep(0.2)
        call.cancel()
        for _ in range(100):
            if setup.seen.hang_cancelled == 2:
                break
            await asyncio.sleep(0.02)
    first_deadline = setup.seen.hang_deadlines[0]
    assert first_deadline is not None and 0 < first_deadline <= 0.5  # the client's own deadline, no extra
    assert setup.seen.hang_deadlines[1] is None
    assert setup.seen.hang_cancelled == 2


async def test_metadata_reaches_the_server_unchanged(setup: Setup) -> None:
    traceparent = ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert (await outcome(setup.proxied, "/test.Echo/Unary", b"m", metadata=(traceparent,)))[0] == "ok"
    assert any(traceparent in md for md in setup.seen.metadata)


async def test_many_concurrent_calls_on_many_connections(setup: Setup) -> None:
    async def client(n: int) -> list[bytes]:
        async with channel(setup.proxied) as ch:
            return await asyncio.gather(*(unary(ch, "/test.Echo/Unary")(b"%d-%d" % (n, i)) for i in range(50)))

    results = await asyncio.gather(*(client(n) for n in range(8)))
    assert [sorted(r) for r in results] == [sorted(b"%d-%d" % (n, i) for i in range(50)) for n in range(8)]
    await asyncio.sleep(0.1)
    assert not setup.relay.connections  # every relayed pair closed with its client


def _push(sock_path: str, total: int) -> int:
    """A call's opening, then its body until `total` bytes or the proxy stops reading (2 s): bytes sent."""
    head, _ = opening("/runtime.v1.RuntimeService/Version")
    body = raw_frame(h2.DATA, 0, 1, b"x" * 16384) * 4
    sent = 0
    with RawClient(sock_path, timeout=2) as client:
        client.send(head)
        try:
            while sent < total:
                client.send(body)
                sent += len(body)
        except TimeoutError:
            pass
    return sent


async def test_bytes_held_for_an_upstream_being_connected_are_bounded(sock_dir: pathlib.Path) -> None:
    # Issue 11.3: what a client sends while its connection moves is held for the new socket;
    # it was held whole. The bridge here never gets ready, so the connection never arrives.
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    never = asyncio.Event()
    bridge = BridgeRoute(sock_dir / "bridge.sock", needs=lambda path: True, ready=never.wait)
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", bridge=bridge)
    await relay.start()
    try:
        total = 64 * HIGH_WATER
        sent = await asyncio.to_thread(_push, str(sock_dir / "p.sock"), total)
        assert sent < 8 * HIGH_WATER, f"{sent >> 20} MiB taken"  # the bound and the socket buffers, not all
    finally:
        await relay.stop(0)
        await backend.stop(0)
