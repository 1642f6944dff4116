"""The two sockets of a relayed pair (`End`), and what an End hands their events to (`Relay`:
proxy.connection.Connection relays between the two ends). Apart from connection.py so that
the routes and the translator can name an End without importing the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

HIGH_WATER = 1 << 20  # pause the other side's reads when this much is waiting to be written


class Relay(Protocol):
    """What an End hands its socket's events to (proxy.connection.Connection)."""

    on_upstream: Callable[[End, bytes], None]

    def client_connected(self, transport: asyncio.Transport) -> None: ...

    def upstream_connected(self, end: End) -> None: ...

    def from_client(self, data: bytes) -> None: ...

    def eof(self, end: End) -> bool: ...

    def lost(self, end: End, exc: Exception | None) -> None: ...

    def pause_peer_of(self, end: End, pause: bool) -> None: ...


class End(asyncio.Protocol):
    """One socket of a relayed pair; it hands everything to its Connection."""

    def __init__(self, conn: Relay, is_client: bool) -> None:
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
