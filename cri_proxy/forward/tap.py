"""The seam between the relay and whatever watches its traffic (the recorder's tap).

The relay calls a connection's tap after it has forwarded the bytes, with the frames those
bytes completed, in order, per direction. A tap must be quick and must not raise: the relay
catches what it raises anyway, logs it once and stops feeding that connection's tap, so a
broken tap never breaks forwarding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cri_proxy.forward.frames import Frame


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Who is on a relayed connection and where it goes."""

    conn_id: int
    peer_pid: int | None
    peer_uid: int | None
    upstream: str


class ConnectionTap(Protocol):
    def client_frames(self, frames: list[Frame]) -> None:
        """Frames the client sent (already forwarded upstream); payloads included."""

    def server_frames(self, frames: list[Frame]) -> None:
        """Frames the upstream sent (already forwarded to the client); payloads included."""

    def upstream_changed(self, upstream: str) -> None:
        """The connection was routed to another upstream (see forward.split)."""

    def closed(self, reason: str | None) -> None:
        """The connection ended; `reason` is None for an orderly close."""


class Tap(Protocol):
    def open(self, info: ConnectionInfo) -> ConnectionTap:
        """Start watching one connection."""
