"""One relayed connection: a client's unix connection and the upstream connection made for it.

Bytes are forwarded the moment they arrive, untouched, so everything HTTP/2 and gRPC carry
(settings, flow control, deadlines, cancellation, metadata, trailers) stays the two ends'
own. After forwarding, the relay walks the frame headers to know which streams are open
(for a graceful stop) and hands the same bytes to the tap when one is attached. The split-endpoint
case, where the request decides the upstream, lives in proxy.routing.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import socket
import struct
from typing import TYPE_CHECKING, Any

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.tap import ConnectionInfo, ConnectionTap

if TYPE_CHECKING:
    from cri_proxy.proxy.server import RelayServer

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # pause the other side's reads when this much is waiting to be written
HEADER_TYPES = frozenset({h2.HEADERS, h2.CONTINUATION})


class _End(asyncio.Protocol):
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
            self.conn.from_upstream(self, data)

    def eof_received(self) -> bool:
        return self.conn.eof(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(self, exc)

    def pause_writing(self) -> None:
        self.conn.pause_peer_of(self, True)

    def resume_writing(self) -> None:
        self.conn.pause_peer_of(self, False)


class Connection:
    """A client connection relayed to one upstream socket."""

    def __init__(self, server: RelayServer, conn_id: int) -> None:
        self.server = server
        self.id = conn_id
        self.client = _End(self, True)
        self.upstream: _End | None = None
        self.upstream_path = server.runtime_path
        self._backlog: list[bytes] = []  # client bytes that arrived before the upstream answered
        self._first = b""  # bytes the next upstream must get before any client bytes
        self._preface_ok = False
        self._preface_sent = False
        self._closing = False
        self.open_streams: set[int] = set()
        self._draining = False
        self._drain_started = False
        self._inject: list[bytes] = []  # frames of our own for the client, sent at a frame boundary
        self._in_block = False  # the upstream is between a HEADERS frame and its last CONTINUATION
        self.tap: ConnectionTap | None = None
        self.c2s = h2.FrameWalker(self.client_keep(), raw=self.frame_wise())
        self.s2c = h2.FrameWalker(raw=self.frame_wise())

    # Hooks for proxy.routing -----------------------------------------------------------
    def client_keep(self) -> frozenset[int]:
        return frozenset()

    def frame_wise(self) -> bool:
        return False

    # Client side -------------------------------------------------------------------------
    def client_connected(self, transport: asyncio.Transport) -> None:
        pid = uid = None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            except OSError:
                pass
        if self.server.tap is not None:
            info = ConnectionInfo(self.id, pid, uid, f"unix://{self.upstream_path}")
            self.tap = self.server.tap.open(info)
        log.debug("conn %d: accepted (pid %s, uid %s)", self.id, pid, uid)
        if self.server.refusal() is not None:
            self.close(abort=True)  # the client fails fast and re-dials, as against a dead runtime
            return
        self.server.spawn(self.start_upstream())

    async def start_upstream(self) -> None:
        if not await self.connect_upstream(self.upstream_path):
            self.close(abort=True)

    async def connect_upstream(self, path: pathlib.Path, first: bytes = b"") -> bool:
        """Connect to `path`; once connected, send `first`, then the client bytes held meanwhile.

        False when `path` cannot be reached: the caller then closes the client's connection
        at once, so it fails fast with UNAVAILABLE and re-dials as against a dead runtime.
        """
        self._first = first
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_unix_connection(lambda: _End(self, False), str(path)), self.server.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self.server.note_upstream_down(self.id, str(path), reason)
            return False
        self.server.note_upstream_up(str(path))
        if self._closing:
            return False
        self.upstream_path = path
        if self._backlog and self._preface_ok:
            backlog, self._backlog = b"".join(self._backlog), []
            self.forward_client(backlog)
        return True

    def upstream_connected(self, end: _End) -> None:
        """The upstream socket is connected: it may speak before connect_upstream resumes."""
        if self._closing:
            if end.transport is not None:
                end.transport.close()
            return
        self.upstream = end
        self.send_upstream(self._first)
        self._first = b""

    def from_client(self, data: bytes) -> None:
        if not self._preface_ok:
            self._backlog.append(data)
            head = b"".join(self._backlog)
            if len(head) < len(h2.PREFACE) and h2.PREFACE.startswith(head):
                return
            if not head.startswith(h2.PREFACE):
                log.warning("conn %d: client did not open with the HTTP/2 preface (first bytes %r); closing it",
                            self.id, head[:24])
                self.close(abort=True)
                return
            self._preface_ok = True
            self._backlog = [head]
            data = b""
            if self.upstream is None:
                return
        if self.upstream is None:
            self._backlog.append(data)
            return
        if self._backlog:
            data, self._backlog = b"".join(self._backlog) + data, []
        self.forward_client(data)

    def forward_client(self, data: bytes) -> None:
        """Send client bytes upstream, then learn from their frames."""
        self.send_upstream(data)
        if not self._preface_sent:
            self._preface_sent = True
            data = data[len(h2.PREFACE):]
        boundary = self.c2s.at_boundary
        self.c2s.track(data, self.open_streams, True)
        if self.tap is not None:
            self.feed_tap(True, data, boundary)

    def send_upstream(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None and data:
            self.upstream.transport.write(data)

    # Upstream side -----------------------------------------------------------------------
    def from_upstream(self, end: _End, data: bytes) -> None:
        if end is not self.upstream:
            return  # an upstream this connection left (proxy.routing)
        self.send_client(data)
        boundary = self.s2c.at_boundary
        self.s2c.track(data, self.open_streams, False)
        self._in_block = self.s2c.in_block
        if self.tap is not None:
            self.feed_tap(False, data, boundary)
        if self._inject:
            self.flush_inject()
        if self._draining:
            self.close_if_drained()

    def after_upstream_frames(self, frames: list[h2.Frame]) -> None:
        """For the paths that walk whole frames (proxy.routing): the same bookkeeping as `track`."""
        for frame in frames:
            if frame.type in (h2.HEADERS, h2.DATA) and frame.flags & h2.FLAG_END_STREAM or frame.type == h2.RST_STREAM:
                self.open_streams.discard(frame.stream_id)
            if frame.type == h2.HEADERS:
                self._in_block = not frame.flags & h2.FLAG_END_HEADERS
            elif frame.type == h2.CONTINUATION and frame.flags & h2.FLAG_END_HEADERS:
                self._in_block = False
        if self.tap is not None and frames:
            self.feed_tap(False, b"".join(f.raw or b"" for f in frames), True)
        self.flush_inject()
        self.close_if_drained()

    def send_client(self, data: bytes) -> None:
        if self.client.transport is not None and data:
            self.client.transport.write(data)

    def inject_to_client(self, frame: bytes) -> None:
        """Queue a frame of the proxy's own for the client, to go out between upstream frames."""
        self._inject.append(frame)
        self.flush_inject()

    def can_inject(self) -> bool:
        """Whether the client's byte stream is between frames (and outside a header block)."""
        return self.s2c.at_boundary and not self._in_block

    def flush_inject(self) -> None:
        if self._inject and self.can_inject():
            self.send_client(b"".join(self._inject))
            self._inject.clear()

    # Tap ------------------------------------------------------------------------------------
    def feed_tap(self, from_client: bool, data: bytes, boundary: bool) -> None:
        if self.tap is None or not data:
            return
        try:
            (self.tap.client_bytes if from_client else self.tap.server_bytes)(data, boundary)
        except Exception:
            log.exception("conn %d: the tap failed; this connection goes on unwatched", self.id)
            tap, self.tap = self.tap, None
            try:
                tap.closed("the tap failed")  # let it settle the calls it holds
            except Exception:
                log.exception("conn %d: the tap failed again while closing", self.id)

    # Both sides ---------------------------------------------------------------------------
    def pause_peer_of(self, end: _End, pause: bool) -> None:
        peer = self.upstream if end is self.client else self.client
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return
        if pause:
            peer.transport.pause_reading()
        else:
            peer.transport.resume_reading()

    def eof(self, end: _End) -> bool:
        """An end finished sending. HTTP/2 has no use for a half-open connection: end both."""
        self.lost(end, None)
        return False

    def lost(self, end: _End, exc: Exception | None) -> None:
        if self._closing or (end is not self.client and end is not self.upstream):
            return
        calls = len(self.open_streams)
        if end is self.client:
            if calls:
                log.info("conn %d: client went away with %d call(s) open (%s); closing its upstream connection",
                         self.id, calls, "closed" if exc is None else f"{type(exc).__name__}: {exc}")
            else:
                log.debug("conn %d: client closed", self.id)
        else:
            what = f"{type(exc).__name__}: {exc}" if exc is not None else "closed"
            log.info("conn %d: upstream unix://%s went away (%s) with %d call(s) open; closing the client connection",
                     self.id, self.upstream_path, what, calls)
        self.close(reason=None if exc is None else str(exc))

    def drain(self, settle: float = 0.2) -> None:
        """Begin a graceful stop: tell the client to open no new calls; close once none is open.

        The GOAWAY needs a moment to reach the client: a call it started meanwhile is still
        forwarded and waited for, so the connection is closed only after `settle` seconds.
        """
        if self._drain_started or self._closing:
            return
        self._drain_started = True
        self.inject_to_client(h2.goaway_frame(0x7FFFFFFF))
        asyncio.get_running_loop().call_later(settle, self._settled)

    def _settled(self) -> None:
        self._draining = True
        self.close_if_drained()

    def close_if_drained(self) -> None:
        if self._draining and not self.open_streams:
            log.debug("conn %d: no call open; closing for shutdown", self.id)
            self.close()

    def close(self, abort: bool = False, reason: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        if self.upstream is not None:
            self.server.note_upstream_closed(str(self.upstream_path))
        for end in (self.client, self.upstream):
            if end is not None and end.transport is not None:
                end.transport.abort() if abort else end.transport.close()
        if self.tap is not None:
            try:
                self.tap.closed(reason)
            except Exception:
                log.exception("conn %d: the tap failed while closing", self.id)
        self.server.forget(self)
