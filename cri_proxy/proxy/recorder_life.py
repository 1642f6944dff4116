"""The recorder process's life as the proxy sees it: spawning the child, reading what it
reports back over the link, and its death and restart (see proxy.recorder_link, whose
`RecorderProcess` extends `ChildLink` with the controls, the CallSink and the Tap).

If the child dies (killed, out of memory), forwarding goes on; the loss is counted (see
recorder_loss) and a new child is started, after 0.5 s and then with a delay that doubles up
to 30 s while children keep dying young. The new one carries on the same session row and
counters; the connections already open are handed to it as gapped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from cri_proxy.model import link
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo
from cri_proxy.proxy.recorder_child import Child
from cri_proxy.proxy.recorder_loss import Outage, Unacked
from cri_proxy.proxy.recorder_out import Outbox, buffer_bytes
from cri_proxy.proxy.tap import ConnectionInfo

log = logging.getLogger(__name__)

FIRST_RESTART_S = 0.5
MAX_RESTART_S = 30.0
STEADY_S = 10.0  # a child that lived this long died of something new: restart it promptly
DIED = "recorder died"
NOTHING = link.Stats(RecorderStats(0, 0, 0, 0, 0, 0, True), 0, 0, None)


class ChildLink:
    """The state of the link to the current recorder child, and the child's lifecycle."""

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
        self._last = NOTHING  # the child's last report
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

    # -- the way out (recorder_out) ----------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if not self._dead:
            self._box.send(data)

    def _announce(self, info: ConnectionInfo) -> None:
        """OPEN: a connection and who is on its client end (for a new child, every live one)."""
        self._send(link.open_message(info.conn_id, info.peer_pid, info.peer_uid, info.upstream, info.peer_gid,
                                     info.peer_name, info.peer_exe))

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
            self._announce(info)
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
