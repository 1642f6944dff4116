"""cri_proxy/proxy/tap.py: the seam between the relay and a watcher, with a plain tap on a real relay."""

from __future__ import annotations

import asyncio
import os
import pathlib
from dataclasses import dataclass, field

import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.tap import ConnectionInfo, ConnectionTap
from tests.helpers.backend import channel, start_echo, unary

pytestmark = pytest.mark.timeout(20)


@dataclass
class Watched:
    """A ConnectionTap that keeps what it is given."""

    info: ConnectionInfo
    client: bytearray = field(default_factory=bytearray)
    server: bytearray = field(default_factory=bytearray)
    boundaries: list[tuple[str, bool]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = "not closed"

    def client_bytes(self, data: bytes, boundary: bool) -> None:
        self.client += data
        self.boundaries.append(("client", boundary))

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        self.server += data
        self.boundaries.append(("server", boundary))

    def upstream_changed(self, upstream: str) -> None:
        self.reason = f"routed to {upstream}, with one upstream"

    def closed(self, reason: str | None) -> None:
        self.reason = reason
        self.ended.set()


class PlainTap:
    def __init__(self) -> None:
        self.opened: list[Watched] = []

    def open(self, info: ConnectionInfo) -> ConnectionTap:
        watched = Watched(info)
        self.opened.append(watched)
        return watched


def frame_types(data: bytes) -> list[int]:
    return [f.type for f in h2.FrameWalker().feed(bytes(data))]


async def test_a_tap_sees_both_directions_and_is_told_of_the_close(sock_dir: pathlib.Path) -> None:
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    tap = PlainTap()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", tap=tap)
    await relay.start()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            assert await unary(ch, "/test.Echo/Unary")(b"ping") == b"ping"
        [watched] = tap.opened
        await asyncio.wait_for(watched.ended.wait(), 10)
    finally:
        await relay.stop(0)
        await backend.stop(0)
    assert watched.info.peer_pid == os.getpid() and watched.info.peer_uid == os.getuid()
    assert watched.info.upstream == f"unix://{sock_dir}/up.sock"
    assert not (watched.reason or "").startswith("routed to")
    assert b"ping" in watched.client and b"ping" in watched.server
    assert h2.SETTINGS in frame_types(watched.client) and h2.HEADERS in frame_types(watched.server)
    assert watched.boundaries[0] == ("client", True)
