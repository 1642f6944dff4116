"""What storing a stats reply as a delta costs: bytes, and CPU to write and to read it back.

Builds storage.py's ListContainerStats and ListPodSandboxStats replies (an 80-pod node,
one every 10 s, `--stats node` or `random` as in storage.py), takes the first of each as
the keyframe and stores each later one against it with the store's own codec
(`cri_proxy.store.bodies`: `compressor(keyframe).compress(body)` as the writer does, then
`undelta(delta, keyframe)` as a reader does, which must give the body back). Prints the
delta's bytes (mean, least, most) and the thread CPU of each write and read (median), and
the first write and read apart (a codec may parse the keyframe once).

    .venv/bin/python benchmarks/stats_codec.py [--replies 60] [--stats node]
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python benchmarks/stats_codec.py \\
        --method ListContainerStats --replies 10 --callgrind write   # instructions of 9 writes, after the first

Only that public API, so an older checkout runs it too:
`env PYTHONPATH=OLD OLD/.venv/bin/python benchmarks/stats_codec.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_calls import Node

from cri_proxy.store import bodies


def replies(method: str, count: int, stats: str, pods: int) -> list[bytes]:
    node = Node(pods, stats=stats)
    make = node.container_stats if method == "ListContainerStats" else node.pod_stats
    out = []
    for n in range(count):
        if n % 60 == 30:
            node.restarts += 1  # as storage.py: a container restarts every 10 minutes
        out.append(make(n * 10))
    return out


def _callgrind(on: bool) -> None:
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], capture_output=True,
                   check=False)


def measure(method: str, count: int, stats: str, pods: int, callgrind: str | None) -> dict[str, object]:
    seq = replies(method, count, stats, pods)
    keyframe, rest = seq[0], seq[1:]
    began = time.thread_time()
    encoder = bodies.compressor(keyframe)
    first = encoder.compress(rest[0])
    first_write = time.thread_time() - began
    began = time.thread_time()
    if bodies.undelta(first, keyframe) != rest[0]:
        raise SystemExit("the first delta did not give its body back")
    first_read = time.thread_time() - began
    deltas, writes, reads = [first], [], []
    if callgrind == "write":
        _callgrind(True)
    for body in rest[1:]:
        began = time.thread_time()
        deltas.append(encoder.compress(body))
        writes.append(time.thread_time() - began)
    if callgrind == "write":
        _callgrind(False)
    if callgrind == "read":
        _callgrind(True)
    for body, delta in zip(rest[1:], deltas[1:], strict=True):
        began = time.thread_time()
        back = bodies.undelta(delta, keyframe)
        reads.append(time.thread_time() - began)
        if back != body:
            raise SystemExit("a delta did not give its body back")
    if callgrind == "read":
        _callgrind(False)
    sizes = [len(d) for d in deltas]
    return {"method": method, "stats": stats, "body_bytes": statistics.mean(map(len, rest)),
            "delta_bytes": statistics.mean(sizes), "least": min(sizes), "most": max(sizes),
            "first_write_ms": first_write * 1e3, "first_read_ms": first_read * 1e3,
            "write_ms": statistics.median(writes) * 1e3, "read_ms": statistics.median(reads) * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=60, help="replies of each method; the first is the keyframe")
    parser.add_argument("--stats", choices=["node", "random", "both"], default="both")
    parser.add_argument("--method", choices=["ListContainerStats", "ListPodSandboxStats", "both"], default="both")
    parser.add_argument("--pods", type=int, default=80)
    parser.add_argument("--callgrind", choices=["write", "read"], help="under callgrind: count these only")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    methods = ["ListContainerStats", "ListPodSandboxStats"] if args.method == "both" else [args.method]
    modes = ["node", "random"] if args.stats == "both" else [args.stats]
    results = []
    for stats in modes:
        for method in methods:
            r = measure(method, args.replies, stats, args.pods, args.callgrind)
            results.append(r)
            print(f"{method:20s} {stats:6s} body {r['body_bytes']:,.0f} B, delta {r['delta_bytes']:,.0f} B "
                  f"({r['least']:,}-{r['most']:,}); write {r['write_ms']:.2f} ms, read {r['read_ms']:.2f} ms "
                  f"(first: {r['first_write_ms']:.1f}, {r['first_read_ms']:.1f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
