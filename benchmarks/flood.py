"""A flood through the recording proxy: closed-loop callers as fast as they go, for seconds.

Run with the project's venv: `.venv/bin/python benchmarks/flood.py [--seconds 10] [--callers 32]
[--method Version --method ListContainers] [--route NAME=CMD]... [--profile DIR]`. For each
route and method it starts a fresh recording proxy (`--db` in the temp dir) in front of the C++
backend, runs the C++ load generator (bench.py's, built as bench.py builds it) for the window,
waits until the recorder has caught up, stops the proxy and prints, per row: calls made, recorded
(of which `unparsed`: their connection lost bytes in the proxy, and with them its HPACK state;
`thinned`: recorded without messages the proxy left out while it was behind)
and lost (the session's counters), the proxy's and the recorder's CPU per call, and their peak RSS.

Routes default to this checkout's proxy (`recording`); `--route base=CMD` adds another build in
the same run (CMD as bench.py's `--extra-proxy`, with `{python} {listen} {runtime} {db}` filled
in), so old and new see the same machine. `--profile DIR` runs `py-spy record` on each recorder
process during its flood and writes DIR/ROUTE-METHOD.txt (py-spy's raw collapsed stacks) with a
summary of the top functions by own and total samples.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import payloads
import psutil
import toolchain
from measure import settle
from paths import PROXY_CMD, start_backend, start_proxy
from procs import Children, cpu_seconds, peak_rss_mb, process_tree

HERE = Path(__file__).resolve().parent
SERVICE = "/runtime.v1.RuntimeService/"
RECORD_CMD = PROXY_CMD + " --db {db}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="flood length (default 10)")
    parser.add_argument("--callers", type=int, default=32, help="closed-loop callers (default 32)")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--method", action="append", help="Version (32 B), ListContainers (26 KB), "
                        "ListContainerStats (1 MB); repeatable (default: Version and ListContainers)")
    parser.add_argument("--route", action="append", default=[], metavar="NAME=CMD",
                        help="a proxy command to flood (default: this checkout's, as 'recording')")
    parser.add_argument("--profile", type=Path, help="py-spy record each recorder process into this directory")
    parser.add_argument("--no-install", action="store_true", help="never apt-get the C++ build deps")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (databases, proxy logs)")
    parser.add_argument("--losses", action="store_true", help="print each row's loss episodes (the losses table)")
    args = parser.parse_args(argv)
    args.method = args.method or ["Version", "ListContainers"]
    args.route = [r.partition("=")[::2] for r in args.route] or [("recording", RECORD_CMD)]
    return args


def flood(children: Children, loadgen: Path, sock: Path, request: Path, args: argparse.Namespace,
          tmp: Path) -> tuple[int, int]:
    """Run the callers for the window; (calls, errors)."""
    start = time.time() + 0.2
    end = start + args.seconds
    per = [args.callers // args.clients + (i < args.callers % args.clients) for i in range(args.clients)]
    runs = []
    for i, count in enumerate(c for c in per if c):
        out = tmp / f"flood{i}.txt"
        argv = [str(loadgen), f"unix:{sock}", SERVICE + args.current, str(request), str(count),
                f"{start:.6f}", f"{end:.6f}", str(out)]
        runs.append((children.start(argv, tmp / f"flood{i}.log"), tmp / f"flood{i}.log"))
    calls = errors = 0
    for proc, log in runs:
        proc.wait(timeout=args.seconds + 120)
        children.stop(proc)
        counts = log.read_text().splitlines()[-1].split()
        calls, errors = calls + int(counts[0]), errors + int(counts[1])
    return calls, errors


def recorder_of(pid: int) -> psutil.Process | None:
    kids = psutil.Process(pid).children(recursive=True)
    return kids[0] if kids else None


def one_row(children: Children, loadgen: Path, backend: Path, name: str, template: str, args: argparse.Namespace,
            tmp: Path) -> str:
    db = tmp / f"{name}-{args.current}.db"
    proxy = start_proxy(children, tmp, backend, template.replace("{db}", str(db)), f"{name}-{args.current}")
    assert proxy.pid is not None
    tree = process_tree(proxy.pid)
    rec = recorder_of(proxy.pid)
    spy = None
    if args.profile is not None and rec is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        out = args.profile / f"{name}-{args.current}.txt"
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                "--pid", str(rec.pid), "--rate", "200", "--output", str(out),
                                "--duration", str(int(args.seconds) + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    before = [cpu_seconds([p]) for p in tree]
    calls, errors = flood(children, loadgen, proxy.socket, tmp / "requests" / f"{args.current}.bin", args, tmp)
    drain = settle(tree)
    cpu = [cpu_seconds([p]) - b for p, b in zip(tree, before)]
    peak = peak_rss_mb(tree)
    peaks = "+".join(f"{peak_rss_mb([p]):.0f}" for p in tree)
    psutil.Process(proxy.pid).send_signal(signal.SIGTERM)
    psutil.Process(proxy.pid).wait(60)
    if spy is not None:
        spy.wait(30)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        recorded, lost, episodes = conn.execute(
            "SELECT sum(calls_recorded), sum(calls_lost), sum(loss_episodes) FROM sessions").fetchone()
        # Recorded, but as `unparsed`: bytes the proxy dropped cost their connection its HPACK state.
        unparsed = conn.execute("SELECT count(*) FROM calls WHERE outcome = 'unparsed'").fetchone()[0]
        # Recorded whole but for messages the proxy left out while it thinned a direction.
        thinned = conn.execute("SELECT count(*) FROM calls WHERE notes LIKE '%the relay left them out%'").fetchone()[0]
        episodes_seen = conn.execute("SELECT started_at, ended_at, reason, calls_lost FROM losses ORDER BY id").fetchall()
    if args.losses:
        for started, ended, reason, lost_in in episodes_seen:
            print(f"  {name} {args.current}: {started} .. {ended}  {lost_in:7d} lost  {reason}", flush=True)
    per_call = [1e6 * c / max(1, calls) for c in cpu]
    rec_us = f"{per_call[1]:6.1f}" if len(per_call) > 1 else "     -"
    return (f"{name:>10} {args.current:>16} {calls:8d} {errors:4d} {recorded:8d} {unparsed:8d} {thinned:8d} {lost:8d} "
            f"{100 * lost / max(1, recorded + lost):6.2f}% {episodes:3d}  {per_call[0]:6.1f} {rec_us}  "
            f"{peak:6.1f} ({peaks})  {drain:5.1f}")


def summarize_profile(path: Path, top: int = 25) -> str:
    """py-spy's raw output (collapsed stacks) as the functions with the most own and total samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{path.name}: {samples} samples", "  own:"]
    lines += [f"  {100 * n / samples:5.1f}% {f}" for f, n in own.most_common(top)]
    lines += ["  total:"] + [f"  {100 * n / samples:5.1f}% {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    toolchain.ensure_deps(allow_install=not args.no_install)
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="crif-", dir="/tmp"))
    rows = []
    try:
        payloads.write(tmp)
        with Children() as children:
            direct, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
            for method in args.method:
                for name, template in args.route:
                    args.current = method
                    rows.append(one_row(children, binaries["loadgen"], direct.socket, name, template, args, tmp))
                    print(rows[-1], flush=True)
    finally:
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nflood: {args.callers} callers, {args.seconds:g} s per row\n"
          f"{'route':>10} {'method':>16} {'calls':>8} {'err':>4} {'recorded':>8} {'unparsed':>8} {'thinned':>8} {'lost':>8} {'lost%':>7} "
          f"{'ep':>3}  {'proxy us':>6} {'rec us':>6}  {'RSS MB (proxy+recorder)':>6}  {'drain s':>5}")
    print("\n".join(rows))
    if args.profile is not None:
        for path in sorted(args.profile.glob("*.txt")):
            if path.stat().st_size:
                print(summarize_profile(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
