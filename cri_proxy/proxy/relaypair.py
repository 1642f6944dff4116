"""The half of a relayed connection that faces its client's reading side, and how it ends.

`RelayPair` holds what both directions share (the two ends, the open streams, the tap) and
does the server-to-client relay: upstream bytes forwarded and walked, the proxy's own frames
injected between them at a frame boundary, the tap fed. It also ends connections: a client
or upstream gone, a graceful drain (GOAWAY, then closed once no call is open), or a failure
(GOAWAY with an error code, then a moment for it to be read). proxy.connection's
`Connection` adds the client-to-server side, connecting upstreams, and `close`, which tells
the server that accepted it.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
from collections.abc import Callable

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.ends import End
from cri_proxy.proxy.lean import LeanWalker
from cri_proxy.proxy.tap import ConnectionTap

log = logging.getLogger(__name__)

FAIL_LINGER = 1.0  # seconds a failed connection stays open for its GOAWAY to be read (see fail())


def _drop(data: bytes) -> None:
    pass


def _drop_chunk(data: bytes, boundary: bool) -> None:
    pass


class RelayPair:
    """A client's connection and its upstream's: their shared state, the way back, the ending."""

    id: int
    on_client: Callable[[bytes], None]  # the client's bytes go here once live (Connection sets it)

    def __init__(self, client: End, start_path: pathlib.Path) -> None:
        self.client = client
        self.upstream: End | None = None
        self.upstream_path = start_path
        self._target: End | None = None  # the upstream socket being connected; any other is let go
        self._live = False  # the client's bytes go to on_client as they arrive
        self._closing = False
        self._failed = False  # fail() ran: the client's bytes are dropped until the connection closes
        self._linger: asyncio.TimerHandle | None = None
        self.open_streams: set[int] = set()
        self._draining = False
        self._drain_started = False
        self._inject: list[bytes] = []  # frames of our own for the client, sent at a frame boundary
        self.server_in_block = False  # the upstream is between a HEADERS frame and its last CONTINUATION
        self.tap: ConnectionTap | None = None
        # A tap that walks the server's bytes itself (metrics only: proxy.lean) walks them for
        # the relay too, in place of `s2c.track` (one walk per chunk), and its way out (see watch()).
        self.lean: LeanWalker | None = None
        self.lean_out: Callable[[bytes, bool], None] = _drop_chunk
        self.c2s = h2.FrameWalker()
        self.s2c = h2.FrameWalker()
        self.on_upstream: Callable[[End, bytes], None] = self.from_upstream
        self.injectable: Callable[[], bool] = self.can_inject

    # Upstream side -----------------------------------------------------------------------
    def from_upstream(self, end: End, data: bytes) -> None:
        if end is not self.upstream:
            return  # an upstream this connection left (proxy.firstcall)
        self.send_client(data)
        if self.lean is not None and self.tap is not None:
            lean = self.lean
            try:
                if out := lean.feed(data, self.s2c, self.open_streams):
                    self.lean_out(out, lean.at_boundary)
            except Exception:
                log.exception("conn %d: the tap failed; this connection goes on unwatched", self.id)
                self._tap_failed()
                # The failed walk was the relay's too: its place in the frames is lost, so the open calls
                # are followed from the next chunk as if it began a frame (a bug's cost: this connection's).
                self.s2c = self.s2c.plain()
            self.server_in_block = self.s2c.in_block
        else:
            boundary = self.s2c.at_boundary
            self.s2c.track(data, self.open_streams, False)
            self.server_in_block = self.s2c.in_block
            if self.tap is not None:  # feed_tap inline: a call fewer per chunk on the recording path
                try:
                    self.tap.server_bytes(data, boundary)
                except Exception:
                    log.exception("conn %d: the tap failed; this connection goes on unwatched", self.id)
                    self._tap_failed()
        if self._inject:
            self.flush_inject()
        if self._draining:
            self.close_if_drained()

    def send_client(self, data: bytes) -> None:
        if self.client.transport is not None and data:
            self.client.transport.write(data)

    def inject_to_client(self, frame: bytes) -> None:
        """Queue a frame of the proxy's own for the client, to go out between upstream frames."""
        if self._failed:
            return  # its writing side is shut (see fail())
        self._inject.append(frame)
        self.flush_inject()

    @property
    def closing(self) -> bool:
        """Closed, or failed and only waiting for its GOAWAY to be read."""
        return self._closing or self._failed

    def can_inject(self) -> bool:
        """Whether the client's byte stream is between frames (and outside a header block)."""
        return self.s2c.at_boundary and not self.server_in_block

    def flush_inject(self) -> None:
        if self._inject and self.injectable():
            self.send_client(b"".join(self._inject))
            self._inject.clear()

    # Tap ------------------------------------------------------------------------------------
    def watch(self, tap: ConnectionTap) -> None:
        """Attach the connection's tap (before any bytes are relayed)."""
        self.tap = tap
        self.lean, self.lean_out = getattr(tap, "lean", None) or (None, _drop_chunk)

    def feed_tap(self, from_client: bool, data: bytes, boundary: bool) -> None:
        if self.tap is None or not data:
            return
        try:
            (self.tap.client_bytes if from_client else self.tap.server_bytes)(data, boundary)
        except Exception:
            log.exception("conn %d: the tap failed; this connection goes on unwatched", self.id)
            self._tap_failed()

    def _tap_failed(self) -> None:
        tap, self.tap, self.lean, self.lean_out = self.tap, None, None, _drop_chunk
        if tap is None:
            return
        try:
            tap.closed("the tap failed")  # let it settle the calls it holds
        except Exception:
            log.exception("conn %d: the tap failed again while closing", self.id)

    # Both sides ---------------------------------------------------------------------------
    def pause_peer_of(self, end: End, pause: bool) -> None:
        peer = self.upstream if end is self.client else self.client
        if peer is None or peer.transport is None or peer.transport.is_closing():
            return
        if pause:
            peer.transport.pause_reading()
        else:
            peer.transport.resume_reading()

    def eof(self, end: End) -> bool:
        """An end finished sending. HTTP/2 has no use for a half-open connection: end both."""
        self.lost(end, None)
        return False

    def lost(self, end: End, exc: Exception | None) -> None:
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
        if self._drain_started or self.closing:
            return  # a failed connection has said GOAWAY and shut its writing side already
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

    def fail(self, error_code: int, reason: str) -> None:
        """The client broke HTTP/2 (or a bound the runtime would enforce): one line, then GOAWAY
        with `error_code`, as the runtime answers a connection error (RFC 9113 §5.4.1).

        Closing a unix socket with unread bytes resets the connection and the GOAWAY with it,
        so, as golang.org/x/net/http2 does, the client's bytes are read and dropped for a
        moment (FAIL_LINGER) after the GOAWAY and a FIN; the client's own close ends it sooner.
        """
        if self._closing or self._failed:
            return
        self._failed = True
        log.warning("conn %d: %s; closing the connection with GOAWAY %s", self.id, reason,
                    h2.ERROR_NAMES.get(error_code, hex(error_code)))
        self._live, self.on_client = True, _drop
        upstream, self.upstream, self._target = self.upstream, None, None
        if upstream is not None and upstream.transport is not None:
            upstream.transport.close()
        transport = self.client.transport
        if transport is None or transport.is_closing():
            self.close(reason=reason)
            return
        if self.injectable():
            self.send_client(h2.goaway_frame(max(self.open_streams, default=0), error_code, reason.encode()[:256]))
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(FAIL_LINGER, self.close, True, reason)

    def close(self, abort: bool = False, reason: str | None = None) -> None:
        """End both sockets and the tap's view, and tell the server (Connection.close)."""
        raise NotImplementedError
