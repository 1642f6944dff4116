"""The proxy's side of the recorder process (see recorder.worker): a Tap, a CallSink and the
recorder's controls, all speaking to the child over one socketpair (model.link).

The way out (recorder_out.Outbox) costs the relay one header and one list append per chunk
and one `sendmsg` per event-loop turn; the child reads it all at once into its own backlog
(recorder.spool). What it has not taken yet waits in the outbox, up to a quarter of
`--queue-mb`, and beyond that is dropped rather than waited for (a GAP: the affected
connection's calls are recorded as unparsed), the episode counted and logged.

If the child dies (killed, out of memory), forwarding goes on; the loss is counted (see
recorder_loss) and a new child is started, after 0.5 s and then with a delay that doubles up
to 30 s while children keep dying young. The new one carries on the same session row and
counters, and writes the loss as a "recorder died" episode: one proxy run stays one session,
whose totals say what it lost. The connections already open are handed to it as if bytes
had gone missing (their later calls are recorded as unparsed: their HPACK state is gone).
With --require-recording, no connection is admitted while no recorder is up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time

from cri_proxy.model import link
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo
from cri_proxy.proxy.lean import LeanWalker
from cri_proxy.proxy.recorder_child import Child
from cri_proxy.proxy.recorder_loss import Outage, Unacked
from cri_proxy.proxy.recorder_out import Outbox, buffer_bytes
from cri_proxy.proxy.tap import ConnectionInfo

log = logging.getLogger(__name__)

FIRST_RESTART_S = 0.5
MAX_RESTART_S = 30.0
STEADY_S = 10.0  # a child that lived this long died of something new: restart it promptly
DIED = "recorder died"
_NOTHING = link.Stats(RecorderStats(0, 0, 0, 0, 0, 0, True), 0, 0, None)


class RecorderProcess:
    """Records through a child process. start() before use, aclose() at the end."""

    def __init__(self, config: RecordConfig, session: SessionInfo) -> None:
        self.options = config.check()  # a wrong flag fails here, before any process starts
        self.config = config
        self.session = session
        self.path = str(config.db) if config.db is not None else "its metrics and spans (no --db)"
        self.limit = buffer_bytes(config.queue_mb)
        self.lean = not config.needs_bodies  # metrics only: DATA frames go as summaries (proxy.lean)
        self._sock: socket.socket | None = None
        self._child: Child | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._box = Outbox(self.limit, lambda: self._loop or self._attach(), self._died)
        self._dead = False
        self._closing = False
        self._last = _NOTHING  # the child's last report
        self._reported = False  # the current child has reported at least once
        self._live: dict[int, ConnectionInfo] = {}
        self._outage: Outage | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._restarts = 0
        self._delay = FIRST_RESTART_S
        self._born = 0.0
        self._reader = link.Reader()
        self._relay = link.RelayState()
        self.session_id: int | None = None

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and wait until it has tried the database. StorageError when it
        cannot be opened and --require-recording is set; otherwise the child says why, once,
        and keeps trying while the proxy relays (as for a database that breaks later)."""
        ready = self._spawn(None).wait_ready(self.path, self._reader)
        self._ready(ready)
        self._last = dataclasses.replace(_NOTHING, stats=dataclasses.replace(_NOTHING.stats, healthy=not ready.fault))
        self._reported = True

    def _spawn(self, resume: link.Resume | None) -> Child:
        level = logging.getLevelName(logging.getLogger("cri_proxy").getEffectiveLevel())
        child = self._child = Child(link.Init(self.config, self.session, level, resume))
        self._sock = self._box.sock = child.sock
        self._born = time.monotonic()
        return child

    def _ready(self, ready: link.Ready) -> None:
        # A fault is the recorder's to say (once, with why); here it only means "not healthy".
        self.session_id = ready.session_id if ready.session_id is not None else self.session_id

    def _attach(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        if self._sock is not None and not self._dead:
            loop.add_reader(self._sock.fileno(), self._on_readable)
        return loop

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
        self._send(link.open_message(info.conn_id, info.peer_pid, info.peer_uid, info.upstream, info.peer_gid,
                                     info.peer_name, info.peer_exe))
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
    def _send(self, data: bytes) -> None:
        if not self._dead:
            self._box.send(data)

    def chunk(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> None:
        if self._dead:
            if self._outage is not None:
                self._outage.relayed(conn_id, data, boundary, from_client)
            return
        self._box.chunk(conn_id, from_client, data, boundary)

    def forget(self, conn_id: int) -> None:
        self._box.forget(conn_id)

    # -- the way back -----------------------------------------------------------------------
    def _on_readable(self) -> None:
        if self._sock is None or self._dead:
            return
        try:
            data = self._sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._died(str(exc))
            return
        if not data:
            self._died("it closed its socket")
            return
        self._reader.feed(data, self._take)

    def _take(self, kind: int, view: memoryview, start: int, stop: int) -> None:
        try:
            if kind == link.STATS:
                self._stats(link.read_stats(view, start, stop))
            elif kind == link.READY:
                self._ready(link.read_ready(view, start, stop))
            elif kind == link.ERROR:
                log.error("the recorder process could not start: %s", link.read_error(view, start, stop))
        except ValueError as exc:
            log.error("the recorder process sent a malformed message: %s", exc)

    def _stats(self, report: link.Stats) -> None:
        self._last = report
        self._box.unacked.acknowledged(report.received)
        if report.session_id is not None:
            self.session_id = report.session_id
        if not self._reported:
            self._reported = True
            if self._outage is not None:  # the new recorder has counted the loss: it is its own now
                log.warning("the recorder process is back (restart %d): %s", self._restarts,
                            "recording again" if report.stats.healthy else "its database does not work yet")
                self._outage = None

    # -- death and restart ------------------------------------------------------------------
    def _died(self, why: str) -> None:
        if self._dead:
            return
        code = self._child.proc.poll() if self._child is not None else None
        self._read_last_words()
        self._detach()
        self._dead = True
        if self._sock is not None:
            self._sock.close()
        unacked = self._box.unacked
        if self._outage is None:  # else the last recorder died before it took the loss over
            self._outage = Outage(self._last.pending, unacked.shipped - self._last.received)
        self._outage.walk(unacked)
        self._box.unacked = Unacked()
        if self._closing:
            return
        lived = time.monotonic() - self._born
        young = self._restarts > 0 and lived < STEADY_S
        self._delay = min(self._delay * 2, MAX_RESTART_S) if young else FIRST_RESTART_S
        log.error("the recorder process stopped (%s%s): %d calls not recorded so far; restarting it in %.1f s; "
                  "forwarding goes on", why, "" if code is None else f", exit status {code}", self._outage.calls,
                  self._delay)
        if self._loop is not None:
            self._restart = self._loop.call_later(self._delay, self._start_again)

    def _read_last_words(self) -> None:
        """The reports it sent before it died (sending to it may fail before they are read):
        what it acknowledged there is not counted lost."""
        if self._sock is None:
            return
        try:
            while data := self._sock.recv(1 << 16):
                self._reader.feed(data, self._take)
        except OSError:
            pass  # read to the end (BlockingIOError), or the socket is broken: nothing more to read

    def _start_again(self) -> None:
        """A new child, carrying on the session and counters; the live connections are handed
        over as gapped, so it follows them from their next frame boundary."""
        self._restart = None
        outage = self._outage
        if self._closing or outage is None:
            return
        if self._child is not None:
            self._child.kill()  # it is gone already (its socket closed): reap it
        self._restarts += 1
        loss = LossEpisode(outage.since, time.time(), DIED, outage.calls)
        resume = link.Resume(self.session_id, self._last.stats, loss)
        try:
            sock = self._spawn(resume).sock
        except OSError as exc:
            log.error("could not start a new recorder process: %s", exc)
            self._died(str(exc))
            return
        log.info("started a new recorder process (restart %d); %d calls were not recorded meanwhile",
                 self._restarts, outage.calls)
        sock.setblocking(False)
        self._reader = link.Reader()
        self._dead = self._reported = False
        self._box.restart(sock, list(self._live))
        self._attach()
        for info in self._live.values():
            self._send(link.open_message(info.conn_id, info.peer_pid, info.peer_uid, info.upstream, info.peer_gid,
                                         info.peer_name, info.peer_exe))
        if self._relay != link.RelayState():
            self._send(link.relay_message(self._relay))

    def _detach(self) -> None:
        """Off the event loop, and nothing more to send."""
        if self._loop is not None and self._sock is not None and not self._dead:
            self._loop.remove_reader(self._sock.fileno())
            self._box.detach(self._loop)
        else:
            self._box.detach(None)
        self._box.sock = None


class _Shipped:
    """One connection's tap: its bytes go to the recorder process as they are."""

    __slots__ = ("proc", "conn_id")

    def __init__(self, proc: RecorderProcess, conn_id: int) -> None:
        self.proc = proc
        self.conn_id = conn_id

    def client_bytes(self, data: bytes, boundary: bool) -> None:
        self.proc.chunk(self.conn_id, True, data, boundary)

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        self.proc.chunk(self.conn_id, False, data, boundary)

    def upstream_changed(self, upstream: str) -> None:
        self.proc.upstream_changed(self.conn_id, upstream)

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        self.proc.call_noted(self.conn_id, stream_id, upstream_api, notes)

    def closed(self, reason: str | None) -> None:
        self.proc.closed(self.conn_id, reason)


class _Lean(_Shipped):
    """One connection's tap when the recorder needs no message bodies: the server's bytes go
    with each DATA frame reduced to a summary of its messages (proxy.lean)."""

    __slots__ = ("server",)

    def __init__(self, proc: RecorderProcess, conn_id: int) -> None:
        super().__init__(proc, conn_id)
        self.server = LeanWalker()

    def server_bytes(self, data: bytes, boundary: bool) -> None:
        walker = self.server
        if out := walker.feed(data):
            self.proc.chunk(self.conn_id, False, out, walker.at_boundary)
