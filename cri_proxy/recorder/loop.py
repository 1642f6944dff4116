"""The recorder process's loop: link messages in, calls rebuilt and recorded, STATS back out.

`Worker` (started by recorder.worker's `main`) handles the blocks the intake thread has
spooled (recorder.intake, recorder.spool): each CHUNK of relayed bytes goes to its
connection's tap, the other link messages (OPEN, CLOSED, GAP, NOTE, CALL, SESSION...) to
what they concern; between blocks it lets the writer commit what is due and acknowledges it
with a STATS message, the proxy's cue to let go of its copy (recorder.reports, `Reports`, a
base class here). How it skims when it falls behind is recorder.catchup (`CatchUp`, another).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING

from cri_proxy.model import link as channel
from cri_proxy.model.session import LossEpisode
from cri_proxy.model.sink import CallSink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.behind import Behind, Episode
from cri_proxy.recorder.catchup import CatchUp
from cri_proxy.recorder.intake import GATHER_S, Intake
from cri_proxy.recorder.leantap import LeanTap
from cri_proxy.recorder.nowriter import NoWriter
from cri_proxy.recorder.priority import Priority
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.reports import QUEUE_MEMORY_BYTES, STATS_INTERVAL_S, Reports
from cri_proxy.recorder.spool import READ_SIZE, Spool
from cri_proxy.recorder.known import FIXED as SQUEEZE_HEAD
from cri_proxy.recorder.known import SQUEEZED, Known, pieces
from cri_proxy.recorder.squeeze import Squeezer
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap

if TYPE_CHECKING:  # prometheus_client and OpenTelemetry are loaded only when asked for
    from cri_proxy.recorder.telemetry import Telemetry

__all__ = ["PROXY_GONE", "QUEUE_MEMORY_BYTES", "STATS_INTERVAL_S", "Worker"]

log = logging.getLogger(__name__)

# Metrics only (lean): a short read waits this long for more, not intake.GATHER_S. Nothing is
# written, and the metrics are read when scraped, so calls may wait 20 ms to be counted;
# meanwhile a node's trickle of calls costs this process's two threads 50 wake-ups a second
# at most, each handling more calls (the relay sends at most every 20 ms, proxy.recorder_out).
LEAN_GATHER_S = 0.02
# The proxy closed the socket without a STOP (killed, or it crashed): what it held for this
# process and had not sent yet is lost, and nobody counted it.
PROXY_GONE = "proxy died: the calls it had not passed on to the recorder are missing, uncounted"
_GAP_WHY = {channel.GAP_BEHIND: "it fell behind",
            channel.GAP_RESTARTED: "it was restarted while the connection was open"}
# A chunk larger than this reaches the tap as a view of the spool's block; a smaller one as
# bytes, whose slices cost the tap less than a view's (2% of a small call in instructions).
VIEW_BYTES = 8 << 10
# How many CHUNK bytes squeezed ones may stand for between two looks at the writer's queue.
PAUSE_CHECK_BYTES = 1 << 20


class Worker(Reports, CatchUp):  # Reports first: its queued_bytes is the one CatchUp asks for
    def __init__(self, sock: socket.socket, recorder: Recorder | NoWriter, budget_bytes: int = 64 << 20,
                 telemetry: Telemetry | None = None, lean: bool = False, spill: int | None = None) -> None:
        """`budget_bytes`: what this process holds, read and not handled yet or queued for the
        writer (--queue-mb); it skims before it gets there (recorder.behind). `lean`: the proxy
        ships DATA frames as summaries (no --db, no spans: proxy.lean). `spill`: the file the
        backlog goes to past a few MB (recorder.spool.spill_file), owned from now on."""
        self.sock = sock
        self.telemetry = telemetry
        self.behind = Behind(budget_bytes)
        # A repeated body waits in the backlog once (recorder.squeeze); metrics only, the
        # proxy ships no bodies.
        self.known = None if lean else Known()
        self.spool = Spool(spill, squeezer=None if self.known is None else Squeezer(self.known))
        self.gone = False  # the proxy closed the socket without a STOP (it was killed)
        self.stamped = False  # the blocks just handled held relayed bytes (self.mono is theirs)
        self.deepest = (0, 0.0)  # the largest backlog (bytes) and how far behind it was (s)
        self.recorder = recorder
        self.wall = time.time()
        self.mono = time.monotonic()
        sink: CallSink = recorder
        if telemetry is not None and isinstance(recorder, NoWriter):
            sink = telemetry  # nothing to write: the calls go to the metrics alone, one call less each
        elif telemetry is not None:
            from cri_proxy.recorder.telemetry import ObservingSink

            sink = ObservingSink(telemetry, recorder)
        self.sink = sink  # the bridge's calls (channel.CALL) reach the metrics and spans as relayed ones do
        tap_type = LeanTap if lean else RecordingTap  # metrics alone: recorder.leantap counts the plain calls
        self.tap = tap_type(sink, clock=lambda: self.wall, timer=lambda: self.mono)
        self.tap.on_skimmed = self._skimmed
        self._episode: Episode | None = None  # the skimming episode, until it is written
        self.conns: dict[int, ConnectionRecorder] = {}
        if telemetry is not None:
            telemetry.watch(self.conns)  # the calls in flight, read from the tap when scraped
        self.stopping = False
        self._out = bytearray()
        self._last_stats = 0.0
        self._failed_logged = False
        self.received = 0  # link bytes handled, acknowledged with every STATS
        self._unsqueezed = 0  # the CHUNK bytes squeezed ones stood for, since the writer was looked at
        self.intake: Intake | None = None  # the reading thread, while run() runs
        self.priority: Priority | None = None  # this thread's, while run() runs (with a database)

    def run(self) -> None:
        sock = self.sock
        sock.setblocking(True)  # the intake's recv waits; the reports go out with MSG_DONTWAIT
        gather = LEAN_GATHER_S if self.tap.lean else GATHER_S
        intake = self.intake = Intake(sock, self.spool, lambda: self.behind.budget - self.queued_bytes(), gather)
        intake.start()
        if not self.tap.lean:  # metrics alone: the whole process yields already (recorder.worker)
            self.priority = Priority(self.behind.budget)
        wait: float | None = 0.0
        try:
            while not self.stopping:
                if not self.spool:
                    intake.arrived.clear()
                    if not self.spool and intake.ended is None:
                        intake.arrived.wait(STATS_INTERVAL_S if wait is None else min(wait, STATS_INTERVAL_S))
                    if not self.spool and intake.ended is not None:
                        self.gone = True
                        log.info("%s: recording what was received and stopping", intake.ended)
                        break
                self.work()
                if self.known is not None:
                    self.known.publish(self.tap.bodies)  # what the intake looks for from now on
                if intake.waiting:
                    intake.handled.set()
                if self._episode is not None and self._episode.ended is not None:
                    self.end_episode(time.time())
                wrote = False
                while (wait := self.recorder.pump()) == 0.0:  # the batches that are due, written here
                    wrote = True
                self.send_stats(force=wrote)  # after a commit at once: it is the proxy's acknowledgement
                if self._out:
                    self.flush()
        finally:
            intake.stop()
        self.finish()

    def work(self, quota: int = READ_SIZE) -> None:
        """Handles spooled blocks, about `quota` bytes of them, then checks how far behind it is."""
        spool = self.spool
        done = 0
        self.stamped = False
        while spool and done < quota and not self.stopping and not self.writer_full():
            done += spool.handle_next(self.handle)
        if self.stamped:
            self.watch_lag(self.mono)
        elif done and self.behind.skimming and not spool:
            self.watch_lag(time.monotonic())  # nothing relayed waits: caught up

    # Messages ------------------------------------------------------------------------------
    def handle(self, kind: int, view: memoryview, start: int, stop: int) -> bool | None:
        """One link message (`view[start:stop]` its body); True: let the writer catch up first."""
        self.received += stop - start + channel.HEAD
        try:
            if kind == channel.CHUNK:
                conn_id, from_client, wall, mono = channel.CHUNK_HEAD.unpack_from(view, start - channel.HEAD)[2:]
                conn = self.conns.get(conn_id)
                if conn is not None:
                    self.wall, self.mono = wall, mono
                    self.stamped = True
                    begin = start - channel.HEAD + channel.CHUNK_HEAD.size
                    # A large chunk goes as a view, not a copy: the spool's blocks never change
                    # (Spool.handle_next), and the tap copies only what it keeps of it (a 26 KB
                    # reply equal to the last one: nothing). A small one costs less as bytes.
                    if stop - begin > VIEW_BYTES:
                        conn.feed(from_client, view[begin:stop])
                    else:
                        (conn.client_bytes if from_client else conn.server_bytes)(bytes(view[begin:stop]))
            elif kind == SQUEEZED:
                return self._squeezed(view, start, stop)
            elif kind == channel.OPEN:
                o = channel.read_opened(view, start, stop)
                self.conns[o.conn_id] = self.tap.open(ConnectionInfo(o.conn_id, o.peer_pid, o.peer_uid, o.upstream,
                                                                     o.peer_gid, o.peer_name, o.peer_exe))
                if self.telemetry is not None:
                    self.telemetry.connection_opened(o.conn_id, o.peer_pid, o.peer_name)
            elif kind == channel.CLOSED:
                conn_id, self.mono, reason = channel.read_closed(view, start, stop)
                if (conn := self.conns.pop(conn_id, None)) is not None:
                    conn.closed(reason)
                if self.telemetry is not None:
                    self.telemetry.connection_closed(conn_id)
            elif kind == channel.UPSTREAM:
                conn_id, upstream = channel.read_upstream(view, start, stop)
                if (conn := self.conns.get(conn_id)) is not None:
                    conn.upstream_changed(upstream)
            elif kind == channel.NOTE:
                conn_id, stream_id, upstream_api, notes = channel.read_note(view, start, stop)
                if (conn := self.conns.get(conn_id)) is not None:
                    conn.call_noted(stream_id, upstream_api, notes)
            elif kind == channel.GAP:
                conn_id, from_client, mono, why, calls = channel.read_gap(view, start, stop)
                if calls:  # begun in bytes the proxy dropped: this process never saw them
                    self.recorder.lost_elsewhere(calls)
                conn = self.conns.get(conn_id)
                if conn is not None and why in (channel.GAP_THIN_START, channel.GAP_THIN_END):
                    conn.thin(from_client, why == channel.GAP_THIN_START, mono)
                elif conn is not None:
                    conn.gap(from_client, mono, _GAP_WHY.get(why, "unknown"))
            elif kind == channel.CALL:
                self.sink.submit(channel.unpickled(view, start, stop))
            elif kind == channel.SESSION:
                changes = channel.read_session(view, start, stop)
                self.recorder.update_session(**changes)
                if self.telemetry is not None:
                    self.telemetry.session_changed(changes)
            elif kind == channel.RELAY:
                state = channel.read_relay(view, start, stop)
                if self.telemetry is not None:
                    self.telemetry.relay_changed(state)
            elif kind == channel.STOP:
                self.stopping = True
            else:
                raise ValueError(f"unknown message kind {kind}")
        except Exception:
            if not self._failed_logged:  # a bug here must not stop the recording of everything else
                self._failed_logged = True
                log.exception("the recorder process failed on a message of kind %d; it goes on", kind)
        return None

    def _squeezed(self, view: memoryview, start: int, stop: int) -> bool:
        """A CHUNK whose known bodies the intake made references (recorder.squeeze): fed to the
        tap piece by piece, the bytes the relay sent, and acknowledged as the CHUNK's size.
        True once enough calls wait for the writer (a squeezed block can hold thousands)."""
        conn_id, from_client, wall, mono, size = SQUEEZE_HEAD.unpack_from(view, start - channel.HEAD)[2:]
        self.received += size - (stop - start + channel.HEAD)
        self._unsqueezed += size
        pause = False
        if self._unsqueezed > PAUSE_CHECK_BYTES:
            self._unsqueezed = 0
            pause = self.writer_full()
        assert self.known is not None
        parts, numbers = pieces(self.known, view, start, stop)
        try:
            conn = self.conns.get(conn_id)
            if conn is not None:
                self.wall, self.mono = wall, mono
                self.stamped = True
                for part in parts:
                    if type(part) is bytes or len(part) > VIEW_BYTES:
                        conn.feed(from_client, part)
                    else:
                        (conn.client_bytes if from_client else conn.server_bytes)(bytes(part))
        finally:
            self.known.release(numbers)
        return pause

    def finish(self) -> None:
        if self.priority is not None:
            self.priority.full()
        while self.spool and not self.stopping:  # the proxy is gone: what it sent is still recorded
            self.work()
            while self.recorder.pump() == 0.0:
                pass
        if self.gone:
            self.recorder.lost_elsewhere(0, LossEpisode(time.time(), time.time(), PROXY_GONE, 0), starts=True)
        squeezer = self.spool.squeezer
        log.info("the recorder handled %d MiB from the proxy (%d MiB of it repeated bodies, kept once); its largest "
                 "backlog was %.1f MiB, %.1f s behind", self.received >> 20, 0 if squeezer is None else
                 squeezer.saved >> 20, self.deepest[0] / (1 << 20), self.deepest[1])
        for conn in self.conns.values():
            conn.closed("the proxy stopped")
        self.conns.clear()
        if self.tap.skimming:
            self.skim(False, 0.0)
        self.end_episode(time.time(), force=True)
        self.recorder.close()
        self.spool.close()
        if self.telemetry is not None:
            self.telemetry.close()
        self.send_stats(force=True)
        self.sock.setblocking(True)
        self.sock.settimeout(1.0)
        try:
            self.sock.sendall(self._out)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
