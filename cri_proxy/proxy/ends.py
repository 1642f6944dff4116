"""The two sockets of a relayed pair (`End`), and what a connection needs from the server that
accepted it (`RelayHost`) and from the strategy that chooses its upstream (`Route`).

proxy.connection relays between the two ends; proxy.server is a RelayHost, proxy.routing
holds the Routes.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from cri_proxy.proxy.tap import Tap

if TYPE_CHECKING:
    from cri_proxy.proxy.connection import Connection

HIGH_WATER = 1 << 20  # pause the other side's reads when this much is waiting to be written


class RelayHost(Protocol):
    """What a connection needs from the server that accepted it (proxy.server.RelayServer)."""

    tap: Tap | None
    connect_timeout: float

    def refusal(self) -> str | None:
        """Why a new connection must be refused now, or None to serve it."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a connection's helper coroutine, keeping a reference until it ends."""

    def forget(self, conn: Connection) -> None:
        """The connection is closed."""

    def note_upstream_down(self, conn_id: int, path: str, reason: str) -> None:
        """`path` could not be reached."""

    def note_out_of_fds(self, conn_id: int, reason: str) -> None:
        """The proxy itself has no file descriptor left for an upstream socket (EMFILE, ENFILE)."""

    def note_upstream_up(self, path: str) -> None:
        """`path` was reached."""

    def note_upstream_closed(self, path: str) -> None:
        """An upstream connection to `path` closed (the runtime behind it may have been replaced)."""


class Route(Protocol):
    """How a connection chooses its upstream; one Route object per connection."""

    start_path: pathlib.Path  # where the connection goes first (the tap's first view of it)

    def attach(self, conn: Connection) -> None:
        """Install the route's walkers and byte handlers on `conn` (at its creation)."""

    async def connect(self, conn: Connection) -> bool:
        """Connect the first upstream; False when none could be reached."""


class End(asyncio.Protocol):
    """One socket of a relayed pair; it hands everything to its Connection."""

    def __init__(self, conn: Connection, is_client: bool) -> None:
        self.conn = conn
        self.is_client = is_client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses
        transport.set_write_buffer_limits(high=HIGH_WATER)
        if self.is_client:
            self.conn.client_connected(transport)
        else:
            self.conn.upstream_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.is_client:
            self.conn.from_client(data)
        else:
            self.conn.on_upstream(self, data)

    def eof_received(self) -> bool:
        return self.conn.eof(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self, exc)

    def pause_writing(self) -> None:
        self.conn.pause_peer_of(self, True)

    def resume_writing(self) -> None:
        self.conn.pause_peer_of(self, False)
