"""Benchmark cri-proxy against a direct connection and nginx, with C++ gRPC load and backend.

Run with the project's venv: `.venv/bin/python benchmarks/bench.py [--quick] [--duration S]
[--json out.json] [--check]`. README.md says what it measures and how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

import payloads
import report
import toolchain
from measure import Load, Result, Workload, run
from paths import PROXY_CMD, Route, nginx_binary, proxy_available, start_backend, start_nginx, start_proxy
from procs import Children

HERE = Path(__file__).resolve().parent
EVENTS_PER_CALL = 10
WORKLOADS = [
    Workload("version", "Version"),
    Workload("list_100", "ListContainers"),
    Workload(report.BIG, "ListContainerStats"),
    Workload("events_x10", "GetContainerEvents", stream=True),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 and 32 callers, 1 s runs: well under a minute")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 3, quick 1)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run (default 0.5, quick 0.3)")
    parser.add_argument("--callers", type=int, nargs="+", help="concurrent callers (default 1 4 32, quick 1 32)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    parser.add_argument("--no-install", action="store_true", help="never apt-get the C++ build deps")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out even if installed")
    parser.add_argument("--proxy-cmd", default=PROXY_CMD,
                        help="how to start the proxy; {python} {listen} {runtime} are filled in (default: %(default)s)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.callers = args.callers or ([1, 32] if args.quick else [1, 4, 32])
    return args


def start_routes(children: Children, tmp: Path, backend: Path, args: argparse.Namespace,
                 notes: list[str]) -> list[Route]:
    direct = start_backend(children, backend, tmp, tmp / "replies", EVENTS_PER_CALL)
    routes = [direct]
    why = proxy_available(args.proxy_cmd)
    if why:
        notes.append(f"proxy skipped: {why}")
    else:
        routes.append(start_proxy(children, tmp, direct.socket, args.proxy_cmd))
    nginx = None if args.no_nginx else nginx_binary()
    if nginx:
        routes.append(start_nginx(children, nginx, tmp, direct.socket))
    else:
        notes.append("nginx skipped: " + ("--no-nginx" if args.no_nginx else "not installed (apt-get install -y nginx)"))
    return routes


def run_all(children: Children, routes: list[Route], loadgen: Path, tmp: Path,
            args: argparse.Namespace) -> list[Result]:
    """Every workload x callers, the routes back to back so they see the same machine."""
    results = []
    for work in WORKLOADS:
        for callers in args.callers:
            for route in routes:
                load = Load(callers, args.warmup, args.duration)
                result = run(children, loadgen, route, work, tmp / "requests" / f"{work.method}.bin", load, tmp)
                print(f"  {work.name:>10} {callers:>3} {route.name:>6}: {result.rps:8.0f} RPC/s"
                      f"  p50 {result.p50_us:7.0f} us  p99 {result.p99_us:7.0f} us", flush=True)
                results.append(result)
    return results


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "-"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "-"


def meta(args: argparse.Namespace, sizes: dict[str, int], notes: list[str], elapsed: float) -> dict[str, object]:
    return {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - elapsed)),
        "elapsed_s": round(elapsed, 1), "cpus": os.cpu_count(), "duration_s": args.duration,
        "warmup_s": args.warmup, "callers": args.callers, "reply_bytes": sizes,
        "events_per_call": EVENTS_PER_CALL, "proxy_cmd": args.proxy_cmd,
        "grpcpp": _version(["pkg-config", "--modversion", "grpc++"]),
        "nginx": _version([nginx_binary() or "nginx", "-v"]),
        "commit": _version(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"]), "notes": notes,
    }


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through Children, which stops every process


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    toolchain.ensure_deps(allow_install=not args.no_install)
    binaries = toolchain.build(HERE, HERE / "build")
    began, notes = time.monotonic(), []
    tmp = Path(tempfile.mkdtemp(prefix="crib-", dir="/tmp"))  # short: socket paths stop near 108 bytes
    try:
        sizes = payloads.write(tmp)
        with Children() as children:
            routes = start_routes(children, tmp, binaries["backend"], args, notes)
            print(f"bench: {', '.join(r.name for r in routes)}; replies {sizes} bytes; "
                  f"{args.duration:g}s per run", flush=True)
            results = run_all(children, routes, binaries["loadgen"], tmp, args)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return finish(args, results, meta(args, sizes, notes, time.monotonic() - began))


def finish(args: argparse.Namespace, results: list[Result], info: dict[str, object]) -> int:
    found = report.bars(results, [w.name for w in WORKLOADS])
    print("\n" + report.table(results) + "\n")
    for note in info["notes"]:  # type: ignore[attr-defined]
        print(f"note: {note}")
    print(report.bar_lines(found))
    print(f"bench: {info['elapsed_s']}s")
    if args.json:
        rows = [r.as_dict() | dict(zip(("p50_x", "rps_x"), report.ratios(results, r))) for r in results]
        bars = [{"bar": b.name, "passed": b.passed, "detail": b.detail} for b in found]
        args.json.write_text(json.dumps({"meta": info, "results": rows, "bars": bars}, indent=1) + "\n")
    return 1 if args.check and any(b.passed is False for b in found) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
