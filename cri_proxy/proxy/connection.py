"""One relayed connection: a client's unix connection and the upstream connection made for it.

Bytes are forwarded the moment they arrive, untouched, so everything HTTP/2 and gRPC carry
(settings, flow control, deadlines, cancellation, metadata, trailers) stays the two ends'
own. After forwarding, the relay walks the frame headers to know which streams are open
(for a graceful stop) and hands the same bytes to the tap when one is attached.

Which upstream a connection goes to is its `Route`'s business (proxy.routing has the two
strategies: one socket, or decided by the first request); what a connection needs from
the server that accepted it is the small `RelayHost` protocol (the two sockets' protocol
objects are proxy.ends'), so this module depends on neither. This module has the client's
side and the connecting; the way back to the client and how a connection ends are
proxy.relaypair's `RelayPair`, which `Connection` extends.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import pathlib
import socket
from collections.abc import Coroutine
from typing import Any, Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.ends import HIGH_WATER, End
from cri_proxy.proxy.floodguard import ControlBudget
from cri_proxy.proxy.peer import PeerCred, peer_of
from cri_proxy.proxy.relaypair import RelayPair
from cri_proxy.proxy.tap import ConnectionInfo, Tap

__all__ = ["HIGH_WATER", "Connection", "End", "RelayHost", "Route"]

log = logging.getLogger(__name__)

async def _connect_from(loop: asyncio.AbstractEventLoop, end: End, path: pathlib.Path, bind: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(bind)
        await loop.sock_connect(sock, str(path))
    except BaseException:
        sock.close()
        raise
    await loop.create_unix_connection(lambda: end, sock=sock)


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

class Connection(RelayPair):
    """A client connection relayed to an upstream socket its `route` chooses.

    The byte handlers `on_client`, `on_upstream` and `injectable` are the plain relay's own
    methods unless the route installs others (and it puts the plain ones back once it has
    nothing more to decide), so the plain path costs no test per chunk. The way back to the
    client and the ending are proxy.relaypair's.
    """

    def __init__(self, host: RelayHost, conn_id: int, route: Route) -> None:
        self.host = host
        self.id = conn_id
        self.route = route
        super().__init__(End(self, True), route.start_path)
        self._backlog: list[bytes] = []  # client bytes read before the preface was whole and an upstream answered
        self._held: list[bytes] = []  # bytes for the upstream being connected, in order
        self._waiting = 0  # bytes in _backlog and _held: past HIGH_WATER the client's reads pause
        self._held_back = False  # the client's reads are paused for that
        self._target_path = route.start_path
        self._preface_ok = False
        self.preface_sent = False
        self.peer = PeerCred()  # who connected (fault rules match on its process name)
        self.control = ControlBudget(asyncio.get_running_loop().time())  # checked against c2s.control
        self.on_client = self.forward_client
        route.attach(self)

    # Client side -------------------------------------------------------------------------
    def client_connected(self, transport: asyncio.Transport) -> None:
        peer = self.peer = peer_of(transport.get_extra_info("socket"), with_process=self.host.tap is not None)
        pid, uid = peer.pid, peer.uid
        if self.host.tap is not None:
            info = ConnectionInfo(self.id, pid, uid, f"unix://{self.upstream_path}", peer.gid, peer.name, peer.exe)
            self.watch(self.host.tap.open(info))
        log.debug("conn %d: accepted (pid %s, uid %s)", self.id, pid, uid)
        if self.host.refusal() is not None:
            self.close(abort=True)  # the client fails fast and re-dials, as against a dead runtime
            return
        self.host.spawn(self._start())

    async def _start(self) -> None:
        if not await self.route.connect(self):
            self.close(abort=True)

    async def connect_upstream(self, path: pathlib.Path, bind: str | None = None) -> bool:
        """Connect to `path` (from the unix address `bind`, if given: peer.bridge_address); once
        connected it gets the bytes held for it, then the client's.

        False when `path` cannot be reached while this connection still waits for it: the
        caller then tries another socket or closes the client's connection at once, so it
        fails fast with UNAVAILABLE and re-dials as against a dead runtime. True also when
        the connection stopped waiting for this socket meanwhile (see `leave_upstream`).
        """
        end = End(self, False)
        self._target, self._target_path = end, path
        loop = asyncio.get_running_loop()
        try:
            connecting = loop.create_unix_connection(lambda: end, str(path)) if bind is None \
                else _connect_from(loop, end, path, bind)
            await asyncio.wait_for(connecting, self.host.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                self.host.note_out_of_fds(self.id, reason)  # the proxy's own trouble, not the upstream's
                return False  # no other socket would fare better: the client fails fast and re-dials
            self.host.note_upstream_down(self.id, str(path), reason)
            return self._target is not end and not self._closing
        self.host.note_upstream_up(str(path))
        return not self._closing

    def upstream_connected(self, end: End) -> None:
        """An upstream socket is connected: it may speak before connect_upstream resumes.

        Everything held for the upstream goes out here, in the same callback, so no client
        byte can slip in between (nor park where nothing would send it).
        """
        if self._closing or end is not self._target:
            if end.transport is not None:
                end.transport.close()  # a socket this connection left (proxy.firstcall) or no longer needs
            return
        self.upstream, self._target = end, None
        self.upstream_path = self._target_path
        if self._held:
            held, self._held = b"".join(self._held), []
            self.send_upstream(held)
        if not self._live and self._preface_ok:
            self._go_live()
        self._relieve(end)

    def leave_upstream(self, first: bytes) -> None:
        """Let the current upstream (or the one being connected) go: from now on what is sent
        upstream is held, after `first`, for the next connect_upstream (proxy.firstcall)."""
        old, self.upstream, self._target = self.upstream, None, None
        if old is not None and old.transport is not None:
            old.transport.close()
        self._held = [first] if first else []
        self._waiting = len(first)

    def _wait(self, size: int) -> None:
        """`size` more client bytes wait for an upstream. They are held as a write buffer is:
        past HIGH_WATER the client's reads pause (a flood while no upstream reads costs no
        more), and resume once the upstream has them (see `_relieve`)."""
        self._waiting += size
        if self._waiting > HIGH_WATER and not self._held_back and self.client.transport is not None:
            self._held_back = True
            self.client.transport.pause_reading()

    def _relieve(self, end: End) -> None:
        self._waiting = 0
        if self._held_back and not self._closing:
            self._held_back = False
            transport, client = end.transport, self.client.transport
            if transport is not None and transport.get_write_buffer_size() > HIGH_WATER:
                return  # the upstream's own resume_writing resumes the client
            if client is not None and not client.is_closing():
                client.resume_reading()

    def from_client(self, data: bytes) -> None:
        if self._live:
            self.on_client(data)
            return
        self._backlog.append(data)
        self._wait(len(data))
        if not self._preface_ok:
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
        if self.upstream is not None:
            self._go_live()
            self._relieve(self.upstream)

    def _go_live(self) -> None:
        self._live = True
        backlog, self._backlog = b"".join(self._backlog), []
        self.on_client(backlog)

    def forward_client(self, data: bytes) -> None:
        """Send client bytes upstream, then learn from their frames."""
        self.send_upstream(data)
        if not self.preface_sent:
            self.preface_sent = True
            data = data[len(h2.PREFACE):]
        boundary = self.c2s.at_boundary
        self.c2s.track(data, self.open_streams, True)
        if self.tap is not None and data:  # feed_tap inline: a call fewer per chunk when recording
            try:
                self.tap.client_bytes(data, boundary)
            except Exception:
                log.exception("conn %d: the tap failed; this connection goes on unwatched", self.id)
                self._tap_failed()
        if self.c2s.control > self.control.allowed:
            self.check_control()

    def check_control(self) -> None:
        """The client sent more SETTINGS and PING bytes than last allowed: a flood? (proxy.floodguard)"""
        reason = self.control.breach(self.c2s, self.s2c, asyncio.get_running_loop().time())
        if reason is not None:
            self.fail(h2.ERR_ENHANCE_YOUR_CALM, reason)

    def send_upstream(self, data: bytes) -> None:
        """Write to the upstream; while none is connected, hold the bytes for the next one."""
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None:
            if data:
                upstream.transport.write(data)
        elif data:
            self._held.append(data)
            self._wait(len(data))

    def close(self, abort: bool = False, reason: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        if self._linger is not None:
            self._linger.cancel()
        if self.upstream is not None:
            self.host.note_upstream_closed(str(self.upstream_path))
        for end in (self.client, self.upstream):
            if end is not None and end.transport is not None:
                end.transport.abort() if abort else end.transport.close()
        if self.tap is not None:
            try:
                self.tap.closed(reason)
            except Exception:
                log.exception("conn %d: the tap failed while closing", self.id)
        self.host.forget(self)
