"""The recorder process: rebuilds calls from the bytes the proxy relayed, and records them.

`cri-proxy run --db` (or `--metrics-listen`, `--otlp-endpoint`) starts it (`python -m
cri_proxy.recorder.worker FD`) with one end of a socketpair. The proxy's event loop then does no more for recording than copy each relayed
chunk into that socket with a timestamp; the tap (frames, HPACK, gRPC messages), redaction,
decoding and SQLite all happen here, on the machine's other core, so recording neither
holds the proxy's interpreter nor delays a reply. Here the tap and the writer share one
thread: two threads would spend their time waiting for each other's interpreter lock
(sqlite3 releases it around every row, and the tap takes it back each time). Only the
socket is read on a thread of its own (recorder.intake), which takes that lock twice per
read of up to 4 MB: the proxy's bytes then wait in this process's spool, mostly on disk,
rather than in the proxy's memory while this thread is busy.

Timings come from the proxy: every chunk carries the wall and monotonic time at which the
relay forwarded it, so a call's start and duration are what they were on the wire however
late this process reads them.

With `--metrics-listen` or `--otlp-endpoint` every call the tap finishes goes to the
metrics and spans peers first (recorder/telemetry.py), then to the recorder; without `--db`
the recorder is a NoWriter (recorder/nowriter.py): no database, no writer.

The process ignores SIGINT and SIGTERM (a terminal's Ctrl-C and systemd's stop reach the
whole group): it stops when the proxy says STOP, or when the proxy is gone (end of file on
the socket, as after `kill -9`), and in both cases records everything it has received first.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import socket
import sys
import time

from cri_proxy.model.errors import CriProxyError
from cri_proxy.model import link as channel
from typing import TYPE_CHECKING

from cri_proxy.model.sink import CallSink
from cri_proxy.recorder.behind import MERGE_S, Behind, Episode
from cri_proxy.recorder.intake import Intake
from cri_proxy.recorder.nowriter import NoWriter
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.setup import make_recorder
from cri_proxy.recorder.spool import READ_SIZE, Spool, spill_file
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.session import LossEpisode
from cri_proxy.proxy.tap import ConnectionInfo

if TYPE_CHECKING:  # prometheus_client and OpenTelemetry are loaded only when asked for
    from cri_proxy.recorder.telemetry import Telemetry

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 0.1
# The proxy closed the socket without a STOP (killed, or it crashed): what it held for this
# process and had not sent yet is lost, and nobody counted it.
PROXY_GONE = "proxy died: the calls it had not passed on to the recorder are missing, uncounted"
_GAP_WHY = {channel.GAP_BEHIND: "it fell behind",
            channel.GAP_RESTARTED: "it was restarted while the connection was open"}
GC_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython: 700)
# The calls waiting for the writer, in bytes, past which no more spooled bytes are handled
# until it has written some: the backlog then waits as bytes in the spool (on disk, see
# recorder.spool), not as calls in memory. At least the writer's batch (queue.BATCH_BYTES),
# so that the writer always has a batch due when handling pauses.
QUEUE_MEMORY_BYTES = 8 << 20


class Worker:
    def __init__(self, sock: socket.socket, recorder: Recorder | NoWriter, budget_bytes: int = 64 << 20,
                 telemetry: Telemetry | None = None, lean: bool = False, spill: int | None = None) -> None:
        """`budget_bytes`: what this process holds, read and not handled yet or queued for the
        writer (--queue-mb); it skims before it gets there (recorder.behind). `lean`: the proxy
        ships DATA frames as summaries (no --db, no spans: proxy.lean). `spill`: the file the
        backlog goes to past a few MB (recorder.spool.spill_file), owned from now on."""
        self.sock = sock
        self.telemetry = telemetry
        self.behind = Behind(budget_bytes)
        self.spool = Spool(spill)
        self.gone = False  # the proxy closed the socket without a STOP (it was killed)
        self.stamped = False  # the blocks just handled held relayed bytes (self.mono is theirs)
        self.deepest = (0, 0.0)  # the largest backlog (bytes) and how far behind it was (s)
        self.recorder = recorder
        self.wall = time.time()
        self.mono = time.monotonic()
        sink: CallSink = recorder
        if telemetry is not None:
            from cri_proxy.recorder.telemetry import ObservingSink

            sink = ObservingSink(telemetry, recorder)
        self.sink = sink  # the bridge's calls (channel.CALL) reach the metrics and spans as relayed ones do
        self.tap = RecordingTap(sink, clock=lambda: self.wall, timer=lambda: self.mono, lean=lean)
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
        self.intake: Intake | None = None  # the reading thread, while run() runs

    def run(self) -> None:
        sock = self.sock
        sock.setblocking(True)  # the intake's recv waits; the reports go out with MSG_DONTWAIT
        intake = self.intake = Intake(sock, self.spool, lambda: self.behind.budget - self.queued_bytes())
        intake.start()
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

    def queued_bytes(self) -> int:
        """Bytes waiting for the writer (its share of the budget)."""
        return self.recorder.stats.queued_bytes

    def writer_full(self) -> bool:
        """Enough calls wait for a working writer: let it write before more are handled. A
        writer that fails is not waited for (its queue fills, and calls are counted lost)."""
        stats = self.recorder.stats
        return stats.queued_bytes > QUEUE_MEMORY_BYTES and stats.healthy

    # Messages ------------------------------------------------------------------------------
    def handle(self, kind: int, view: memoryview, start: int, stop: int) -> None:
        self.received += stop - start + channel.HEAD
        try:
            if kind == channel.CHUNK:
                conn_id, from_client, wall, mono = channel.CHUNK_HEAD.unpack_from(view, start - channel.HEAD)[2:]
                conn = self.conns.get(conn_id)
                if conn is not None:
                    self.wall, self.mono = wall, mono
                    self.stamped = True
                    data = bytes(view[start - channel.HEAD + channel.CHUNK_HEAD.size:stop])
                    (conn.client_bytes if from_client else conn.server_bytes)(data)
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

    def watch_lag(self, mono: float) -> None:
        """How far behind the relay the recorder is (the chunk relayed at `mono` just handled,
        and the backlog): skim, or stop skimming."""
        change = self.behind.feed(time.monotonic(), mono, self.spool.bytes + self.queued_bytes())
        self.deepest = max(self.deepest, (self.behind.backlog, self.behind.lag))
        if change is not None:
            self.skim(change, self.behind.lag)

    def skim(self, on: bool, lag: float) -> None:
        """Fallen behind (or caught up): calls that start now are not recorded (or are again).

        Following the calls (but not their messages, nor writing them) costs a fraction of
        recording them, so the recorder catches up while its HPACK state stays in step; the
        calls it skims are counted lost, in one loss episode (see recorder.behind).
        """
        self.tap.skimming = on
        now = time.time()
        episode = self._episode
        if on:
            if episode is not None and episode.ended is not None and now - episode.ended < MERGE_S:
                episode.ended = None  # the same flood, going on
                return
            self.end_episode(now)
            self._episode = Episode(now)
            self.recorder.lost_elsewhere(0, starts=True)
            log.warning("the recorder is %.1f s behind the proxy (about %d MiB): calls are counted lost, not "
                        "recorded, until it catches up", lag, self.behind.backlog >> 20)
        elif episode is not None:
            episode.ended = now

    def end_episode(self, now: float, force: bool = False) -> None:
        """Writes the skimming episode once it has ended for MERGE_S (or at once, `force`)."""
        episode = self._episode
        if episode is None or (episode.ended is None and not force):
            return
        ended = episode.ended if episode.ended is not None else now
        if not force and now - ended < MERGE_S:
            return
        self._episode = None
        self.recorder.lost_elsewhere(0, LossEpisode(episode.since, ended, "recorder fell behind", episode.lost))
        log.warning("the recorder caught up after %.1f s; %d calls were lost meanwhile", ended - episode.since,
                    episode.lost)

    def _skimmed(self, call: RecordedCall) -> None:
        if self._episode is not None:
            self._episode.lost += 1
        self.recorder.lost_elsewhere(1)
        if self.telemetry is not None:
            self.telemetry.skimmed(call)

    # Back to the proxy ---------------------------------------------------------------------
    def send_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._last_stats + STATS_INTERVAL_S:
            return
        self._last_stats = now
        if len(self._out) < 1 << 16:  # the proxy is not reading: it will get the next one
            stats = self.recorder.stats
            if self.telemetry is not None:
                self.telemetry.tick(stats, now, self.behind.lag)
            pending = stats.queued + sum(len(conn.calls) for conn in self.conns.values())
            self._out += channel.stats_message(stats, self.received, pending, self.recorder.session_id)

    def flush(self) -> None:
        try:
            sent = self.sock.send(self._out, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()  # the proxy is gone; nobody to tell
            return
        del self._out[:sent]

    def finish(self) -> None:
        while self.spool and not self.stopping:  # the proxy is gone: what it sent is still recorded
            self.work()
            while self.recorder.pump() == 0.0:
                pass
        if self.gone:
            self.recorder.lost_elsewhere(0, LossEpisode(time.time(), time.time(), PROXY_GONE, 0), starts=True)
        log.info("the recorder handled %d MiB from the proxy; its largest backlog was %.1f MiB, %.1f s behind",
                 self.received >> 20, self.deepest[0] / (1 << 20), self.deepest[1])
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


def _receive_init(sock: socket.socket) -> channel.Init:
    """The INIT message, read to its last byte and no further: what follows is the Worker's."""
    (length,) = channel.LENGTH.unpack(_recv_exactly(sock, channel.LENGTH.size))
    body = _recv_exactly(sock, length)
    if body[0] != channel.INIT:
        raise ValueError(f"expected INIT, got message kind {body[0]}")
    init = pickle.loads(body[1:])
    if not isinstance(init, channel.Init):
        raise ValueError(f"expected the recorder's options, got {type(init).__name__}")
    return init


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        got = sock.recv(size - len(data))
        if not got:
            raise EOFError("the proxy closed the socket before configuring the recorder")
        data += got
    return bytes(data)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m cri_proxy.recorder.worker FD (started by `cri-proxy run`)", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(argv[0]))
    init = _receive_init(sock)
    logging.basicConfig(level=init.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[recorder]: %(message)s")
    config = init.config
    telemetry: Telemetry | None = None
    try:
        recorder = _make_recorder(init)
        if config.telemetry.enabled:
            telemetry = _make_telemetry(init, recorder)
    except (CriProxyError, OSError) as exc:
        sock.sendall(channel.error_message(str(exc)))
        return 1
    sock.sendall(channel.ready_message(recorder.session_id, recorder.fault or ""))
    tune_gc()
    spill = spill_file(os.path.dirname(os.path.abspath(config.db))) if config.db is not None else None
    Worker(sock, recorder, budget_bytes=config.queue_mb << 20, telemetry=telemetry,
           lean=not config.needs_bodies, spill=spill).run()
    return 0


def tune_gc() -> None:
    """Every call leaves a few dozen container objects (frames, messages, rows), so the
    collector's youngest generation would be walked every few dozen calls, and each full
    collection would walk the modules loaded at start too: those are set aside (gc.freeze)
    and the youngest generation collected every GC_THRESHOLD allocations. Cycles are still
    collected; there are few (a call is freed by reference counting once written)."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def _make_recorder(init: channel.Init) -> Recorder | NoWriter:
    if init.config.db is not None:
        return make_recorder(init.config, init.session, thread=False, resume=init.resume)
    init.config.check()
    writer = NoWriter()
    if init.resume is not None:
        writer.carry_on(init.resume.stats)
        writer.lost_elsewhere(init.resume.loss.calls_lost, starts=True)
    log.info("no database (no --db): the recorder process only feeds the metrics and spans peers")
    return writer


def _make_telemetry(init: channel.Init, recorder: Recorder | NoWriter) -> Telemetry:
    from cri_proxy.recorder.telemetry import Telemetry

    config = init.config
    telemetry = Telemetry(config.telemetry, init.session.runtime_endpoint or "", require=config.require,
                          db_path=str(config.db) if config.db is not None else None,
                          fault=lambda: recorder.fault)
    try:
        telemetry.start()
    except OSError as exc:
        telemetry.close()
        raise OSError(f"--metrics-listen {config.telemetry.metrics_listen}: cannot serve there: "
                      f"{exc.strerror or exc}") from exc
    return telemetry


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (EOFError, ValueError, pickle.UnpicklingError) as exc:
        print(f"cri-proxy recorder: {exc}", file=sys.stderr)
        sys.exit(2)
