"""What metrics cost per call, measured offline: a captured link stream (`recorder_cpu.py
capture`) replayed as `--metrics-listen` without `--db` ships it, into the recorder process's
Worker, and through the relay's lean walker.

Run with the project's venv:

    .venv/bin/python benchmarks/recorder_cpu.py capture /tmp/version.cap [--method Version]
    .venv/bin/python benchmarks/metrics_cpu.py /tmp/version.cap [--repeat 3] [--profile] [--callgrind]

It first walks every server chunk of the capture with `proxy.lean.LeanWalker` (the relay's
work for the recorder in this mode, on the relay's loop) and prints its CPU time per call
(the least of five passes);
then it replays the walked stream (OPEN, CHUNK stamped with the time it is sent, CLOSED,
STOP) `--repeat` times into a `Worker` with a `NoWriter` and the metrics peer
(`Telemetry`, its HTTP listener not started), lean, skimming off, and prints the worker
thread's CPU time per call the metrics counted (the tap and the metrics peer: everything
the recorder process does for a call in this mode), with `--profile` cProfile's top
functions, with `--callgrind` (under `valgrind --tool=callgrind --instr-atstart=no`) the
worker's run only instrumented, with `--callgrind-walk` one pass of the walker only (no
replay: the calls are the capture's). It uses only what the checkout of issue 13's metrics has too,
so `env PYTHONPATH=OLD OLD/.venv/bin/python benchmarks/metrics_cpu.py FILE` measures an older
build on the same capture.
"""

from __future__ import annotations

import argparse
import pickle
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from recorder_cpu import (  # the capture's format, the link's feeder, a timed run
    Event,
    _feed,
    _instrument,
    timed_run,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="times the capture is played (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile the worker, print the top functions")
    parser.add_argument("--callgrind", action="store_true", help="count the worker's run only (under callgrind)")
    parser.add_argument("--callgrind-walk", action="store_true",
                        help="count one pass of the relay's lean walker only (under callgrind); no replay")
    return parser.parse_args(argv)


def walked(events: list[Event], rounds: int = 5, callgrind: bool = False) -> tuple[list[Event], float]:
    """The capture as the relay ships it in metrics-only mode, and the walker's CPU seconds
    for one pass over it (the least of `rounds` passes, each with new walkers, timed whole;
    `callgrind`: the last pass alone instrumented)."""
    from cri_proxy.proxy.lean import LeanWalker

    server = [(conn, data) for kind, conn, client, data in events if kind == "chunk" and not client]
    best = float("inf")
    for round_ in range(rounds):
        walkers: dict[int, LeanWalker] = {}
        counted = callgrind and round_ == rounds - 1
        _instrument(counted, "on")
        start = time.thread_time()
        for conn, data in server:
            walker = walkers.get(conn)
            if walker is None:
                walker = walkers[conn] = LeanWalker()
            walker.feed(data)
        best = min(best, time.thread_time() - start)
        _instrument(counted, "off")
    walkers = {}
    out: list[Event] = []
    for kind, conn, client, data in events:
        if kind == "chunk" and not client:
            data = walkers.setdefault(conn, LeanWalker()).feed(data)
            if not data:
                continue
        out.append((kind, conn, client, data))
    return out, best


def counted(registry: object) -> int:
    """Calls the metrics peer counted (cri_proxy_calls_total over every label)."""
    return int(sum(sample.value for family in registry.collect()  # type: ignore[attr-defined]
                   for sample in family.samples if sample.name == "cri_proxy_calls_total"))


def replay(args: argparse.Namespace) -> int:
    from cri_proxy.model.options import TelemetryConfig
    from cri_proxy.recorder import worker as worker_module
    from cri_proxy.recorder.nowriter import NoWriter
    from cri_proxy.recorder.telemetry import Telemetry
    from cri_proxy.recorder.worker import Worker

    events, walk_cpu = walked(pickle.loads(args.capture.read_bytes()), callgrind=args.callgrind_walk)
    if args.callgrind_walk:
        print(f"walked {sum(1 for kind, _, client, _ in events if kind == 'chunk' and not client)} server chunks")
        return 0
    telemetry = Telemetry(TelemetryConfig(metrics_listen="unix:///unused.sock"), "unix:///run/backend.sock")
    assert telemetry.metrics is not None
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # as the proxy's end of the link
    worker = Worker(ours, NoWriter(), budget_bytes=1 << 40, telemetry=telemetry, lean=True)
    worker.skim = lambda *args: None  # type: ignore[method-assign]  # every call counted, however slow
    feeder = threading.Thread(target=_feed, args=(theirs, events, args.repeat), daemon=True)
    worker_module.tune_gc()
    cpu, wall, profile = timed_run(worker.run, feeder, args.callgrind, args.profile)
    calls = counted(telemetry.metrics.registry)
    per_walk = calls // max(1, args.repeat)
    print(f"relay's lean walker: {1e6 * walk_cpu / max(1, per_walk):.2f} us CPU per call ({per_walk} calls)")
    print(f"{calls} calls counted; worker thread CPU {cpu:.3f} s, wall {wall:.3f} s: "
          f"{1e6 * cpu / max(1, calls):.1f} us CPU per call")
    if profile is not None:
        import pstats

        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(replay(parse_args(sys.argv[1:])))
