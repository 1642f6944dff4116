"""The seam between the relay and whatever watches its traffic (the recorder's tap).

The relay calls a connection's tap after it has forwarded the bytes, with those bytes, in
order, per direction: the HTTP/2 frames the client sent (after the connection preface) and
the frames the upstream sent, plus any answer the proxy gave in the upstream's place. The
relay only tells whether a chunk begins at a frame boundary; splitting frames is the tap's
business, so that the relay's own path stays a header walk. A tap must be quick and must
not raise: the relay catches what it raises anyway, logs it once and stops feeding that
connection's tap, so a broken tap never breaks forwarding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who is on a relayed connection and where it goes."""

    conn_id: int
    peer_pid: int | None
    peer_uid: int | None
    upstream: str
    peer_gid: int | None = None
    peer_name: str | None = None  # the process name (/proc/PID/comm)
    peer_exe: str | None = None  # its executable (/proc/PID/exe), when it could be read


class ConnectionTap(Protocol):
    def client_bytes(self, data: bytes, boundary: bool) -> None:
        """Bytes the client sent (already forwarded upstream); `boundary`: they begin a frame."""

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        """Bytes the upstream sent (already forwarded to the client); `boundary` as above."""

    def upstream_changed(self, upstream: str) -> None:
        """The connection was routed to another upstream (see proxy.firstcall)."""

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        """What the relay did to a call (proxy.translate), told after the tap saw its request:
        the version it went out in, when not the client's, and notes. Stream 0: every call of
        this connection from now on."""

    def closed(self, reason: str | None) -> None:
        """The connection ended; `reason` is None for an orderly close."""


class Tap(Protocol):
    def open(self, info: ConnectionInfo) -> ConnectionTap:
        """Start watching one connection."""
