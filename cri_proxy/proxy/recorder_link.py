"""The proxy's side of the recorder process (see recorder.worker): a Tap, a CallSink and the
recorder's controls, all speaking to the child over one socketpair (model.link).

The way out (recorder_out.Outbox) costs the relay one header and one list append per chunk
and one `sendmsg` per 20 ms (or per MiB); the child reads it all at once into its own backlog
(recorder.spool). What it has not taken yet waits in the outbox, up to a quarter of
`--queue-mb`, and beyond that is dropped rather than waited for (a GAP: the affected
connection's calls are recorded as unparsed), the episode counted and logged.

If the child dies (killed, out of memory), forwarding goes on; the loss is counted (see
recorder_loss) and a new child is started (proxy.recorder_life), after 0.5 s and then with
a delay that doubles up to 30 s while children keep dying young. The new one carries on the same session row and
counters, and writes the loss as a "recorder died" episode: one proxy run stays one session,
whose totals say what it lost. The connections already open are handed to it as if bytes
had gone missing (their later calls are recorded as unparsed: their HPACK state is gone).
With --require-recording, no connection is admitted while no recorder is up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial

from cri_proxy.model import link
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import RecorderStats, SessionInfo
from cri_proxy.proxy.lean import LeanWalker
from cri_proxy.proxy.recorder_child import START_TIMEOUT_S
from cri_proxy.proxy.recorder_life import NOTHING, ChildLink
from cri_proxy.proxy.recorder_out import prefix, send_every
from cri_proxy.proxy.tap import ConnectionInfo

log = logging.getLogger(__name__)


class RecorderProcess(ChildLink):
    """Records through a child process. start() before use, aclose() at the end."""

    def __init__(self, config: RecordConfig, session: SessionInfo) -> None:
        super().__init__(config, session)
        self._box.when_down = self._relayed_while_down
        self._box.every = send_every(self.options.flush_interval_s)

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and wait until it has tried the database. StorageError when it
        cannot be opened and --require-recording is set; otherwise the child says why, once,
        and keeps trying while the proxy relays (as for a database that breaks later)."""
        config = self.config
        child = self._spawn(None)
        ready = child.wait_ready(self.path, self._reader, START_TIMEOUT_S if config.require else config.start_wait_s,
                                 give_up=config.require)
        self._reported = True
        if ready is None:  # still opening: healthy once it reports
            log.warning("the recorder process is still opening %s after %.0f s (an integrity check or a schema "
                        "migration of a large file): forwarding starts now, and calls are recorded once it is "
                        "open (what does not fit its queue meanwhile is counted lost)", self.path, config.start_wait_s)
            self._last = dataclasses.replace(NOTHING, stats=dataclasses.replace(NOTHING.stats, healthy=False))
            return
        self._ready(ready)
        self._last = dataclasses.replace(NOTHING, stats=dataclasses.replace(NOTHING.stats, healthy=not ready.fault))

    async def aclose(self, timeout_s: float | None = None) -> None:
        """Hand over what is waiting, tell the child to stop, and wait while it records the rest."""
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
        if self._outage is not None and self._dead:
            log.warning("no recorder process is up: %d calls relayed since it died are not recorded",
                        self._outage.calls)
        timeout = self.options.close_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        box = self._box
        while box.out and not self._dead and time.monotonic() < deadline:
            box.flush()
            await asyncio.sleep(0.01)
        if box.out and not self._dead:
            log.warning("the recorder process did not take %d bytes within %.1f s: they are lost",
                        box.pending, timeout)
        if not self._dead:
            self._detach()
            await asyncio.to_thread(self._stop_child, max(0.5, deadline - time.monotonic()) + 2.0)
        elif self._child is not None:
            self._child.kill()  # its socket is closed; reap it (or end it, should it linger)

    def _stop_child(self, timeout: float) -> None:
        if self._child is not None:
            self._child.stop(timeout, self._reader, self._take)
        self._dead = True

    @property
    def stats(self) -> RecorderStats:
        s = self._last.stats
        lost, episodes = s.lost, s.loss_episodes + self._box.gap_episodes
        if self._outage is not None:  # not handed to a recorder yet
            lost += self._outage.calls
            episodes += 1
        healthy = s.healthy and not self._dead and self._reported and self._box.gap_since is None
        return dataclasses.replace(s, lost=lost, loss_episodes=episodes, healthy=healthy,
                                   queued_bytes=s.queued_bytes + self._box.pending)

    # -- CallSink and recorder controls ------------------------------------------------------
    def submit(self, call: RecordedCall) -> None:
        """A call the bridge served; like every sink, never blocks and never raises."""
        try:
            if self._dead and self._outage is not None:
                self._outage.calls += 1
            self._send(link.pickled(link.CALL, call))
        except Exception:
            log.exception("could not hand a call to the recorder process")

    def update_session(self, **changes: str | None) -> None:
        # A restarted recorder starts from the session as it is now.
        self.session = dataclasses.replace(self.session, **changes)  # type: ignore[arg-type]
        self._send(link.session_message(changes))

    def relay_changed(self, state: link.RelayState) -> None:
        """The relay's readiness (listening, the runtime answering), for the recorder's /readyz."""
        if state != self._relay:
            self._relay = state
            self._send(link.relay_message(state))

    # -- Tap --------------------------------------------------------------------------------
    def open(self, info: ConnectionInfo) -> _Shipped:
        self._live[info.conn_id] = info
        self._announce(info)
        return _Lean(self, info.conn_id) if self.lean else _Shipped(self, info.conn_id)

    def upstream_changed(self, conn_id: int, upstream: str) -> None:
        info = self._live.get(conn_id)
        if info is not None:
            self._live[conn_id] = dataclasses.replace(info, upstream=upstream)
        self._send(link.upstream_message(conn_id, upstream))

    def call_noted(self, conn_id: int, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        self._send(link.note_message(conn_id, stream_id, upstream_api, notes))

    def closed(self, conn_id: int, reason: str | None) -> None:
        self._live.pop(conn_id, None)
        self.forget(conn_id)
        if self._outage is not None:
            self._outage.forget(conn_id)
        self._send(link.closed_message(conn_id, time.monotonic(), reason))

    # -- the way out (recorder_out) ----------------------------------------------------------
    def chunk(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> None:
        """A relayed chunk for the child (the taps call the outbox itself: a call fewer per chunk)."""
        self._box.chunk(conn_id, from_client, data, boundary)

    def _relayed_while_down(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> None:
        if self._outage is not None:  # the child died: the calls these bytes carry are counted lost
            self._outage.relayed(conn_id, data, boundary, from_client)

    def forget(self, conn_id: int) -> None:
        self._box.forget(conn_id)

class _Shipped:
    """One connection's tap: its bytes go to the recorder process as they are."""

    __slots__ = ("proc", "conn_id", "box", "client_bytes", "server_bytes")

    def __init__(self, proc: RecorderProcess, conn_id: int) -> None:
        self.proc = proc
        self.conn_id = conn_id
        self.box = proc._box  # the same one for every child (Outbox.restart)
        # Both directions' bytes go as they are: straight to the outbox (no call of ours between).
        ship = self.box.ship
        self.client_bytes: Callable[[bytes, bool], None] = partial(ship, conn_id, True, prefix(conn_id, True))
        self.server_bytes: Callable[[bytes, bool], None] = partial(ship, conn_id, False, prefix(conn_id, False))

    def upstream_changed(self, upstream: str) -> None:
        self.proc.upstream_changed(self.conn_id, upstream)

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        self.proc.call_noted(self.conn_id, stream_id, upstream_api, notes)

    def closed(self, reason: str | None) -> None:
        self.proc.closed(self.conn_id, reason)


class _Lean(_Shipped):
    """One connection's tap when the recorder needs no message bodies: the server's bytes go
    with each DATA frame reduced to a summary of its messages (proxy.lean)."""

    __slots__ = ("server", "lean")

    def __init__(self, proc: RecorderProcess, conn_id: int) -> None:
        super().__init__(proc, conn_id)
        self.server = LeanWalker()
        # For the relay's plain path (proxy.relaypair): the walker, fed the relay's own walk
        # (LeanWalker.feed with `track`), and where what it gives goes.
        self.lean = self.server, self.server_bytes
        self.server_bytes = self.lean_bytes  # the other paths' (translation, answers): walked here

    def lean_bytes(self, data: bytes, boundary: bool) -> None:
        walker = self.server
        if out := walker.feed(data):
            self.box.chunk(self.conn_id, False, out, walker.at_boundary)
