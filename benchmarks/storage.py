"""Bytes stored for a day of an 80-pod node, and how fast the writer stores them.

Run with the project's venv: `.venv/bin/python benchmarks/storage.py [--seconds 3600] [--pods 80]`.
It builds the calls a kubelet makes to its runtime over `--seconds` of simulated time
(node_calls.py: PLEG relists every second, pod and container status once a minute per pod,
exec probes, image and runtime status, and a stats call every 10 s whose figures move as a
node's do, node_stats.py; `--stats random` draws them at random every time, the older model;
`--stats-calls` picks ListContainerStats, the kubelet's default, ListPodSandboxStats, or both,
the upper bound), with the metadata grpc-go sends (a `grpc-timeout` that differs on every
call), records them with the
real Recorder into a temp file, and prints bytes per call, bytes per day (scaled from the
simulated time; `--seconds 86400` records a whole day, which is the figure to quote: an hour
scaled x24 overstates a day, since a day's file holds more of its pages full), where they went (SQLite's dbstat per table and index), calls written per
second and the CPU the process used for them. Nothing in it is project-version specific
beyond the Recorder's public API, so the same script measures an older checkout:
`env PYTHONPATH=OLD OLD/.venv/bin/python benchmarks/storage.py`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from node_calls import day_of_calls

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection

PUMP_EVERY = 2_000  # calls built between two pumps of the writer


def breakdown(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    finally:
        conn.close()


def read_back(path: Path) -> float:
    """The CPU (this thread's) to read every call of the recording back with its messages."""
    conn = open_readonly(path)
    try:
        began = time.thread_time()
        loaded = load_calls(conn, Selection())
        return time.thread_time() - began if loaded else 0.0
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3600, help="simulated seconds of kubelet traffic")
    parser.add_argument("--pods", type=int, default=80)
    parser.add_argument("--stats", choices=["node", "random"], default="node",
                        help="stats figures that move as a node's do (node_stats.py), or drawn at random each time")
    parser.add_argument("--stats-calls", choices=["container", "pod", "both"], default="container",
                        help="the kubelet's stats call every 10 s: ListContainerStats (its default), "
                             "ListPodSandboxStats (gate PodAndContainerStatsFromCRI on), or both (an upper bound)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="copy the recording to this file, to look into it")
    parser.add_argument("--read-back", action="store_true",
                        help="then read every call back with its messages (the reader API) and print the CPU it took")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.db"
        # The calls are built as they are recorded and the writer is pumped in this thread
        # (start(thread=False), as the recorder process does), so the queue holds at most
        # PUMP_EVERY calls: a whole day (--seconds 86400, ~785,000 calls) fits in memory, where
        # building them all first and queueing them filled an 8 GiB queue and lost calls.
        recorder = Recorder(path, options=RecorderOptions(max_queue_calls=4 * PUMP_EVERY, max_queue_bytes=1 << 30))
        recorder.start(thread=False)
        ncalls = message_bytes = 0
        building = 0.0  # the CPU that making the calls took, left out of the writer's
        calls = day_of_calls(args.seconds, args.pods, args.stats, args.stats_calls)
        began, cpu = time.perf_counter(), time.process_time()
        while True:
            before = time.process_time()
            call = next(calls, None)
            building += time.process_time() - before
            if call is None:
                break
            ncalls += 1
            message_bytes += sum(len(m.data) for m in call.messages)
            recorder.submit(call)
            if ncalls % PUMP_EVERY == 0:
                while recorder.pump() == 0.0:
                    pass
        recorder.close(timeout_s=600)
        elapsed, cpu = time.perf_counter() - began - building, time.process_time() - cpu - building
        stats = recorder.stats
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        recorded = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        conn.close()
        size = path.stat().st_size
        parts = breakdown(path)
        read_cpu = read_back(path) if args.read_back else None
        if args.keep:
            shutil.copyfile(path, args.keep)
    per_day = size * 86400 / args.seconds
    figures = {"calls": ncalls, "recorded": recorded, "lost": stats.lost, "calls_per_day": ncalls * 86400 / args.seconds,
               "message_bytes_per_call": message_bytes / ncalls, "file_bytes": size,
               "bytes_per_call": size / ncalls, "mb_per_day": per_day / 1e6,
               "calls_written_per_s": ncalls / elapsed, "cpu_s": cpu, "read_back_cpu_s": read_cpu,
               "parts": dict(parts)}
    print(f"{ncalls:,} calls over {args.seconds:,} s of an {args.pods}-pod node, stats {args.stats}, "
          f"stats calls {args.stats_calls} "
          f"({ncalls / args.seconds:.1f}/s, {figures['calls_per_day']:,.0f} a day), "
          f"{message_bytes / ncalls:,.0f} message bytes per call; recorded {recorded:,}, lost {stats.lost}")
    print(f"file: {size:,} bytes, {size / ncalls:,.0f} bytes per call, {per_day / 1e6:,.1f} MB a day")
    print(f"writer: {ncalls / elapsed:,.0f} calls written per second ({elapsed:.1f} s, {cpu:.1f} s of CPU)")
    if read_cpu is not None:
        print(f"read back: every call with its messages in {read_cpu:.2f} s of CPU")
    for name, nbytes in parts:
        print(f"  {name:28s} {nbytes:>12,} bytes  {nbytes / ncalls:8.1f} per call")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if recorded == ncalls else 1


if __name__ == "__main__":
    sys.exit(main())
