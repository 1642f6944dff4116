"""Benchmark cri-proxy against a direct connection and nginx, with C++ gRPC load and backend.

Run with the project's venv: `.venv/bin/python benchmarks/bench.py [--quick] [--duration S]
[--json out.json] [--check]`. README.md says what it measures and how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from measure import Load, Result, Sample, Workload, run, summarize, wait_for_quiet
from paths import PROXY_CMD, Route, nginx_binary, proxy_available, start_backend, start_nginx, start_proxy
from procs import Children, process_tree

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
    parser.add_argument("--quick", action="store_true", help="1 and 32 callers, shorter runs: about 40 s")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per route x workload x callers (default 3, quick 0.8)")
    parser.add_argument("--rounds", type=int, help="windows that duration is cut into, routes taking turns "
                        "(default 3, quick 2)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each window (default 0.3, quick 0.15)")
    parser.add_argument("--callers", type=int, nargs="+", help="concurrent callers (default 1 4 32, quick 1 32)")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--max-noise", type=float, default=25.0,
                        help="before each window, wait for the machine's CPU use to fall under this %% of a core; "
                        "rows above it are flagged (default 25)")
    parser.add_argument("--quiet-wait", type=float,
                        help="seconds to wait at most for that quiet moment (default 1, quick 0.3)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 when a bar fails")
    parser.add_argument("--no-install", action="store_true", help="never apt-get the C++ build deps")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out even if installed")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (payloads, logs, nginx.conf)")
    parser.add_argument("--proxy-cmd", default=PROXY_CMD,
                        help="how to start the proxy; {python} {listen} {runtime} {tmp} are filled in "
                        "(default: %(default)s)")
    parser.add_argument("--record", action="store_true",
                        help="also measure the proxy recording every call (route 'recording', --db in the temp "
                        "dir), with its bars and how many calls it recorded and lost")
    parser.add_argument("--metrics", action="store_true",
                        help="also measure the proxy serving metrics without a database (route 'metrics': "
                        "--metrics-listen, no --db), whose recorder gets DATA frames as summaries")
    parser.add_argument("--extra-proxy", action="append", default=[], metavar="NAME=CMD",
                        help="also measure this proxy command (same fill-ins, and {old_runtime}: the v1alpha2-only "
                        "backend) as route NAME; repeatable")
    parser.add_argument("--workloads", nargs="+", choices=[w.name for w in WORKLOADS],
                        help="measure only these workloads (default: all)")
    parser.add_argument("--no-faults", action="store_true",
                        help="leave out route 'faults' (the proxy with a rules file whose rules match no "
                        "benchmark call)")
    parser.add_argument("--no-translated", action="store_true",
                        help="leave out route 'translated' (the proxy in front of a v1alpha2-only backend)")
    args = parser.parse_args(argv)
    args.duration = args.duration or (0.8 if args.quick else 3.0)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.15 if args.quick else 0.3)
    args.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.3 if args.quick else 1.0)
    args.callers = args.callers or ([1, 32] if args.quick else [1, 4, 32])
    return args


# Rules that every benchmark call is tried against and none matches: the cost of --faults.
NO_MATCH_RULES = """rules:
  - {name: no-pulls, match: {method: PullImage}, action: {error: {code: UNAVAILABLE, message: bench}}}
  - {name: no-such-client, match: {client: no-such-process}, action: {delay: 1s}}
  - {name: no-v1alpha2, match: {api: v1alpha2, method: "List*"}, action: {hang: deadline}}
"""


def start_routes(children: Children, tmp: Path, backend: Path, args: argparse.Namespace,
                 notes: list[str]) -> tuple[list[Route], list[int]]:
    """The routes to measure, and the pids of every long-lived process behind them."""
    direct, backend_pid = start_backend(children, backend, tmp, tmp / "replies", EVENTS_PER_CALL)
    old, old_pid = start_backend(children, backend, tmp, tmp / "replies", EVENTS_PER_CALL, "v1alpha2")
    routes = [direct]
    why = proxy_available(args.proxy_cmd)
    if why:
        notes.append(f"proxy skipped: {why}")
    else:
        routes.append(start_proxy(children, tmp, direct.socket, args.proxy_cmd))
    if args.record and not why:
        routes.append(start_proxy(children, tmp, direct.socket, args.proxy_cmd + " --db {tmp}/calls.db", "recording"))
    if args.metrics and not why:
        metrics = args.proxy_cmd + " --metrics-listen unix://{tmp}/m.sock"
        routes.append(start_proxy(children, tmp, direct.socket, metrics, "metrics"))
    if not args.no_faults and not why:
        rules = tmp / "faults.yaml"
        rules.write_text(NO_MATCH_RULES)
        routes.append(start_proxy(children, tmp, direct.socket, args.proxy_cmd + f" --faults {rules}", "faults"))
    if not args.no_translated and not why:
        template = args.proxy_cmd.replace("{runtime}", "{old_runtime}")
        routes.append(start_proxy(children, tmp, direct.socket, template, "translated", old.socket))
    for extra in args.extra_proxy:
        name, _, template = extra.partition("=")
        routes.append(start_proxy(children, tmp, direct.socket, template, name, old.socket))
    nginx = None if args.no_nginx else nginx_binary()
    if nginx:
        routes.append(start_nginx(children, nginx, tmp, direct.socket))
    else:
        why = "--no-nginx" if args.no_nginx else "not installed (apt-get install -y nginx)"
        notes.append(f"nginx skipped: {why}")
    return routes, [backend_pid, old_pid] + [r.pid for r in routes if r.pid]


def run_all(children: Children, routes: list[Route], own_pids: list[int], loadgen: Path, tmp: Path,
            args: argparse.Namespace) -> list[Result]:
    """Every workload x callers; the routes take turns in short windows so they share the noise."""
    own = [p for pid in own_pids for p in process_tree(pid)]
    results = []
    for work in [w for w in WORKLOADS if not args.workloads or w.name in args.workloads]:
        request = tmp / "requests" / f"{work.method}.bin"
        # v1alpha2 has no GetContainerEvents: a translated route answers it UNIMPLEMENTED
        serving = [r for r in routes if not (work.stream and r.translated)]
        for callers in args.callers:
            load = Load(callers, args.warmup, args.duration / args.rounds, args.clients)
            samples: dict[str, list[Sample]] = {r.name: [] for r in serving}
            for turn in range(args.rounds):
                for route in serving[turn % len(serving):] + serving[:turn % len(serving)]:
                    wait_for_quiet(args.max_noise, args.quiet_wait)
                    samples[route.name].append(run(children, loadgen, route, work, request, load, tmp, own))
                    children.check_alive()
            for route in serving:
                results.append(summarize(route, work, callers, samples[route.name]))
                print(progress_line(results[-1]), flush=True)
    return results


def progress_line(r: Result) -> str:
    return (f"  {r.workload:>10} {r.callers:>3} {r.route:>9}: {r.rps:8.0f} RPC/s  p50 {r.p50_us:7.0f} us"
            f"  p99 {r.p99_us:7.0f} us  (other processes: {r.other_cpu_pct:.0f}% CPU)")


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
        "rounds": args.rounds, "warmup_s": args.warmup, "max_noise_pct": args.max_noise,
        "quiet_wait_s": args.quiet_wait, "callers": args.callers, "reply_bytes": sizes,
        "events_per_call": EVENTS_PER_CALL, "proxy_cmd": args.proxy_cmd, "extra_proxies": args.extra_proxy,
        "grpcpp": _version(["pkg-config", "--modversion", "grpc++"]),
        "nginx": _version([nginx_binary() or "nginx", "-v"]),
        "commit": _version(["git", "-C", str(HERE), "describe", "--always", "--dirty"]), "notes": notes,
    }


def recording_totals(db: Path, route: str = "recording") -> str:
    """What a recording route wrote: every call it relayed (warm-ups too), recorded or lost."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            recorded, lost, episodes = conn.execute(
                "SELECT sum(calls_recorded), sum(calls_lost), sum(loss_episodes) FROM sessions").fetchone()
            rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.Error as exc:
        return f"{route}: could not read {db}: {exc}"
    return (f"{route}: {recorded} calls recorded ({rows} rows), {lost} lost in {episodes} episode(s); "
            f"database {db.stat().st_size / 1e6:.1f} MB")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through Children, which stops every process


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    toolchain.ensure_deps(allow_install=not args.no_install)
    binaries = toolchain.build(HERE, HERE / "build")
    began, notes = time.monotonic(), list[str]()
    tmp = Path(tempfile.mkdtemp(prefix="crib-", dir="/tmp"))  # short: socket paths stop near 108 bytes
    try:
        sizes = payloads.write(tmp)
        with Children() as children:
            routes, own_pids = start_routes(children, tmp, binaries["backend"], args, notes)
            print(f"bench: {', '.join(r.name for r in routes)}; replies {sizes} bytes; "
                  f"{args.duration:g}s per row in {args.rounds} windows", flush=True)
            results = run_all(children, routes, own_pids, binaries["loadgen"], tmp, args)
            if args.record:
                notes.append(recording_totals(tmp / "calls.db"))
            for extra in args.extra_proxy:  # another build recording, e.g. `--db {tmp}/base.db`: the same note
                name, _, cmd = extra.partition("=")
                if found := re.search(r"--db \{tmp\}/(\S+)", cmd):
                    notes.append(recording_totals(tmp / found[1], name))
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:  # a process failed to start, or died: its log tail is in the message
        print(f"bench: {error}", file=sys.stderr)
        return 2
    finally:
        if args.keep_tmp:
            print(f"bench: sockets, payloads and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return finish(args, results, notes, meta(args, sizes, notes, time.monotonic() - began))


def finish(args: argparse.Namespace, results: list[Result], notes: list[str], info: dict[str, object]) -> int:
    """Print the table, notes and bars; write the JSON; the exit status."""
    found = report.bars(results, [w.name for w in WORKLOADS])
    print("\n" + report.table(results) + "\n")
    noisy = [r for r in results if r.other_cpu_pct > args.max_noise]
    if noisy:
        notes.append(
            f"{len(noisy)} of {len(results)} rows ran while other processes used more than {args.max_noise:g}% "
            f"of a core (up to {max(r.other_cpu_pct for r in noisy):.0f}%): those figures are noisy")
    for note in notes:
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
