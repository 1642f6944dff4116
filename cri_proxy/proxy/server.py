"""The relay server: accepts client connections on the listen socket and relays each one.

It owns the connections and their helper tasks, reports the upstream's reachability once
per episode (a kubelet re-dials a dead runtime every few seconds; one line per attempt
would bury the log), and stops gracefully: stop accepting, let open calls finish within a
grace period, then close what is left.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pathlib
import resource
from collections.abc import Callable, Coroutine
from typing import Any, Final

from cri_proxy.proxy.connection import Connection, Route
from cri_proxy.proxy.firstcall import FirstCallRoute
from cri_proxy.proxy.prober import VersionProber
from cri_proxy.proxy.routing import BridgeRoute, DirectRoute, Upstreams
from cri_proxy.proxy.tap import Tap
from cri_proxy.proxy.translate import TranslationPolicy

__all__ = ["BridgeRoute", "RelayServer"]  # BridgeRoute lives in proxy.routing; daemon imports it from here

log = logging.getLogger(__name__)

# The listen queue. uvloop's default of 100 refuses (EAGAIN) a burst of connects larger
# than that, and every kubelet client re-dials at once when a runtime comes back; the
# kernel clamps it to net.core.somaxconn (4096 by default since Linux 5.4), and a queued
# connection costs only a small socket until it is accepted.
LISTEN_BACKLOG: Final = 4096
FDS_QUIET_S: Final = 60.0  # an episode of fd exhaustion ends after this long without one (see _fds_recovered)


class RelayServer:
    """Relays every connection on `listen` to `runtime` (or, for image calls, `image`)."""

    def __init__(self, listen: pathlib.Path, runtime: pathlib.Path, image: pathlib.Path | None = None,
                 tap: Tap | None = None, connect_timeout: float = 5.0, bridge: BridgeRoute | None = None,
                 versions: VersionProber | None = None, translation: TranslationPolicy | None = None) -> None:
        self.listen = listen
        self.runtime_path = runtime
        self.image_path = image if image is not None and image != runtime else None
        self.tap = tap
        self.bridge = bridge
        self.versions = versions  # what the upstreams speak; asked again when they may have changed
        self.translation = translation  # which connections the relay translates itself
        self.connect_timeout = connect_timeout
        self.connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._down: dict[str, str] = {}
        self._server: asyncio.AbstractServer | None = None
        # Asked at each new connection: a reason to refuse it (e.g. recording is failing and
        # is required), or None to serve it.
        self.admission: Callable[[], str | None] | None = None
        self._refusing: str | None = None
        self._out_of_fds = 0  # connections closed since the proxy ran out of file descriptors
        self._fds_full_at = 0  # connections open when it did
        self._fds_last = 0.0  # loop time of the last connection closed for want of one

    async def start(self) -> None:
        """Listen on the (already prepared) socket path."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._accept, str(self.listen), backlog=LISTEN_BACKLOG)

    def _accept(self) -> Any:
        conn = self._new_connection(next(self._ids))
        self.connections.add(conn)
        return conn.client

    def _new_connection(self, conn_id: int) -> Connection:
        return Connection(self, conn_id, self._route())

    def _route(self) -> Route:
        if self.image_path is None and self.bridge is None and self.translation is None:
            return DirectRoute(self.runtime_path)
        return FirstCallRoute(Upstreams(self.runtime_path, self.image_path, self.bridge, self.versions,
                                        self.translation))

    def refusal(self) -> str | None:
        """Why a new connection must be refused now, if it must; logged once per episode."""
        reason = self.admission() if self.admission is not None else None
        if reason != self._refusing:
            if reason is not None:
                log.warning("refusing new connections: %s", reason)
            else:
                log.info("accepting new connections again")
            self._refusing = reason
        return reason

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a connection's helper coroutine, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, conn: Connection) -> None:
        self.connections.discard(conn)

    def note_upstream_down(self, conn_id: int, path: str, reason: str) -> None:
        if path not in self._down:
            log.warning("upstream unix://%s unreachable (%s): closing client connections at once so they fail "
                        "fast and re-dial, as they would against a dead runtime", path, reason)
        else:
            log.debug("conn %d: upstream unix://%s still unreachable (%s)", conn_id, path, reason)
        self._down[path] = reason
        if self.versions is not None:
            self.versions.probe_soon()  # it may come back speaking another CRI version

    def note_upstream_closed(self, path: str) -> None:
        """An upstream connection closed (either end first: a runtime that stops sends GOAWAY, and
        the client may close before the runtime does). The runtime may have been replaced: ask
        again, in the background; probes are coalesced, so a burst of closes costs one round."""
        if self.versions is not None:
            self.versions.probe_soon()

    def note_out_of_fds(self, conn_id: int, reason: str) -> None:
        """Out of file descriptors: each new connection is closed at once (its client re-dials, as
        after any failed connect) until connections close; said once per episode."""
        now = asyncio.get_running_loop().time()
        if not self._out_of_fds:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning("out of file descriptors (%s; RLIMIT_NOFILE %d, %d connections open): new connections "
                        "are closed at once until some close; the listen socket stays open", reason, soft,
                        len(self.connections))
            self._fds_full_at = len(self.connections)
        self._out_of_fds += 1
        self._fds_last = now

    def _fds_recovered(self) -> None:
        """At the limit, a connection now and then finds a descriptor that one closing freed: the
        episode ends only once a tenth of the connections have closed, or a minute went by."""
        if (len(self.connections) * 10 > self._fds_full_at * 9
                and asyncio.get_running_loop().time() - self._fds_last < FDS_QUIET_S):
            return
        log.warning("file descriptors are available again: serving new connections (%d were closed for want "
                    "of them, besides those the event loop had to close as it accepted them)", self._out_of_fds)
        self._out_of_fds = 0

    def note_upstream_up(self, path: str) -> None:
        if self._out_of_fds:
            self._fds_recovered()
        if self._down.pop(path, None) is not None:
            log.info("upstream unix://%s reachable again", path)

    async def stop(self, grace: float) -> None:
        """Stop accepting; give open calls `grace` seconds to finish; close the rest."""
        if self._server is not None:
            self._server.close()
        open_calls = sum(len(c.open_streams) for c in self.connections)
        log.info("stopping: %d connection(s), %d call(s) open, grace period %.1fs",
                 len(self.connections), open_calls, grace)
        for conn in list(self.connections):
            conn.drain()
        deadline = asyncio.get_running_loop().time() + grace
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.open_streams:
                log.warning("conn %d: %d call(s) still open after the grace period; closing",
                            conn.id, len(conn.open_streams))
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
