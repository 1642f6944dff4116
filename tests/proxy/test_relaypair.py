"""cri_proxy/proxy/relaypair.py, on a real relay before a real echo backend: a drained connection
says GOAWAY and closes once no call is open; a failed one lets its upstream go, says GOAWAY
with its error code, and closes."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable

import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.server import RelayServer
from tests.helpers.backend import start_echo
from tests.helpers.rawh2 import RawClient, drain, hello

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
