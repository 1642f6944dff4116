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
from typing import TYPE_CHECKING

from cri_proxy.model import link as channel
from cri_proxy.model.errors import CriProxyError
from cri_proxy.recorder.loop import Worker
from cri_proxy.recorder.nowriter import NoWriter
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.setup import make_recorder
from cri_proxy.recorder.spool import spill_file

if TYPE_CHECKING:  # prometheus_client and OpenTelemetry are loaded only when asked for
    from cri_proxy.recorder.telemetry import Telemetry

__all__ = ["GC_THRESHOLD", "Worker", "main", "tune_gc"]

log = logging.getLogger(__name__)

GC_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython: 700)


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
    if not config.needs_bodies:
        yield_to_relay()
    spill = spill_file(os.path.dirname(os.path.abspath(config.db))) if config.db is not None else None
    Worker(sock, recorder, budget_bytes=config.queue_mb << 20, telemetry=telemetry,
           lean=not config.needs_bodies, spill=spill).run()
    return 0


# Metrics alone: the recorder process's niceness. When the node's CPU is short, the relay (the
# kubelet's calls) and the node's workloads go first, and the counts trail (the link and the
# spool hold the lean bytes, about 250 B a small call: 64 MiB is minutes of a flood, hours of
# a kubelet); at a kubelet's tens of calls a second a nice-19 process still gets far more CPU
# than it needs. Not so with --db: a recording that fell behind in a flood would skim calls it
# keeps; there the recording thread yields only while it keeps up (recorder.priority).
LEAN_NICENESS = 19


def yield_to_relay() -> None:
    """Lower this thread's CPU priority, and so that of the threads it starts from now on (the
    intake), to LEAN_NICENESS (lowering it needs no privilege); the metrics server started
    before keeps the proxy's."""
    os.nice(max(0, LEAN_NICENESS - os.nice(0)))


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
