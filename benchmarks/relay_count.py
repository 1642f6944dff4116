"""The relay process's instructions per call, whole: the proxy under callgrind, live.

bench.py's rows move with the machine's load; an instruction count does not. This runs the
C++ backend, then for each route in turn `TREE/.venv/bin/python -m cri_proxy run` from TREE
(with PYTHONPATH=TREE) under `valgrind --tool=callgrind --instr-atstart=no`, switches the
count on once the proxy listens, runs bench.py's C++ load generator against it for
`--seconds`, and prints the relay process's instructions (callgrind's `totals`) divided by
the calls made. The recorder process, a child started with exec, runs natively: its work is
not counted (recorder_cpu.py and metrics_cpu.py count it).

    .venv/bin/python benchmarks/relay_count.py proxy=. metrics=.:metrics base-metrics=../base:metrics \\
        [--method Version] [--callers 1] [--seconds 10]

`--live` runs the same routes natively instead, and prints what each process (the relay, and
its recorder process when there is one) spent per call from /proc: user and system CPU
microseconds and context switches (every thread's, voluntary or not: its wake-ups), the
recorder's counted until it is idle again (a recorder that trails the relay finishes its work
first, and that work counts). CPU time moves with the machine's load; run the builds in turns.

A route is NAME=TREE, with `:metrics` for `--metrics-listen` alone (the lean link) or `:record`
for `--db` in the run's temp dir (the recording link: every chunk shipped whole). How many
calls share a chunk moves with timing, so a figure moves by a percent or two between runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402
import toolchain  # noqa: E402
from paths import start_backend  # noqa: E402
from procs import Children, usage, wait_for_socket  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("routes", nargs="+", help="NAME=TREE, NAME=TREE:metrics or NAME=TREE:record")
    parser.add_argument("--method", default="Version")
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--live", action="store_true", help="run natively: CPU and wake-ups per call from /proc")
    return parser.parse_args(argv)


def proxy_argv(tmp: Path, backend: Path, route: str) -> tuple[str, Path, list[str]]:
    """(name, listen socket, the proxy's command from its tree) for NAME=TREE[:MODE]."""
    name, _, where = route.partition("=")
    tree_arg, _, mode = where.partition(":")
    tree = Path(tree_arg).resolve()
    listen = tmp / f"{name}.sock"
    extra = {"metrics": ["--metrics-listen", f"unix://{tmp}/{name}-m.sock"],
             "record": ["--db", str(tmp / f"{name}.db")]}.get(mode, [])
    return name, listen, [str(tree / ".venv/bin/python"), "-m", "cri_proxy", "run", "--listen", f"unix://{listen}",
                          "--runtime-endpoint", f"unix://{backend}", *extra]


def start_load(children: Children, tmp: Path, loadgen: Path, name: str, args: argparse.Namespace,
               start: float) -> subprocess.Popen[bytes]:
    return children.start([str(loadgen), f"unix:{tmp / f'{name}.sock'}", SERVICE + args.method,
                           str(tmp / "requests" / f"{args.method}.bin"), str(args.callers), f"{start:.6f}",
                           f"{start + args.seconds:.6f}", str(tmp / f"{name}.lat")], tmp / f"{name}-load.log")


def calls_made(tmp: Path, name: str) -> int:
    return int((tmp / f"{name}-load.log").read_text().splitlines()[-1].split()[0])


def count(children: Children, tmp: Path, loadgen: Path, backend: Path, route: str,
          args: argparse.Namespace) -> tuple[int, int]:
    """(calls made, instructions of the relay process) for one route."""
    name, listen, argv = proxy_argv(tmp, backend, route)
    tree = Path(argv[0]).parent.parent.parent
    out = tmp / f"{name}.callgrind"
    proxy = children.start(["env", "-C", str(tree), f"PYTHONPATH={tree}", "valgrind", "--tool=callgrind",
                            "--instr-atstart=no", f"--callgrind-out-file={out}", *argv],
                           tmp / f"{name}.log")  # env execs: the pid is the relay's
    wait_for_socket(listen, proxy, tmp / f"{name}.log", timeout=120)
    time.sleep(2.0)  # its recorder process started, its first connections' work done
    subprocess.run(["callgrind_control", "-i", "on", str(proxy.pid)], capture_output=True, check=True)
    load = start_load(children, tmp, loadgen, name, args, time.time() + 0.5)
    load.wait()
    subprocess.run(["callgrind_control", "-i", "off", str(proxy.pid)], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-d", str(proxy.pid)], capture_output=True, check=True)  # the load's part
    children.stop(proxy)
    calls = calls_made(tmp, name)
    totals = [int(line.split()[1]) for part in tmp.glob(f"{name}.callgrind*")
              for line in part.read_text().splitlines() if line.startswith("totals:")]
    return calls, max(totals)  # the dump holds all the counted work; the part written at exit none


def live(children: Children, tmp: Path, loadgen: Path, backend: Path, route: str,
         args: argparse.Namespace) -> str:
    """One route natively: each process's CPU and wake-ups per call, as a line."""
    name, listen, argv = proxy_argv(tmp, backend, route)
    tree = Path(argv[0]).parent.parent.parent
    proxy = children.start(["env", "-C", str(tree), f"PYTHONPATH={tree}", *argv], tmp / f"{name}.log")
    wait_for_socket(listen, proxy, tmp / f"{name}.log", timeout=60)
    time.sleep(1.0)
    pids = [proxy.pid] + [child.pid for child in psutil.Process(proxy.pid).children()]
    start = time.time() + 0.5
    load = start_load(children, tmp, loadgen, name, args, start)
    time.sleep(max(0.0, start - time.time()))
    before = [usage(pid) for pid in pids]
    load.wait()
    after = [usage(pid) for pid in pids]
    deadline = time.monotonic() + 30
    while len(pids) > 1 and time.monotonic() < deadline:  # the recorder's trailing work counts
        time.sleep(0.3)
        now = usage(pids[1])
        if now[:2] == after[1][:2]:
            break
        after[1] = now
    children.stop(proxy)
    calls = max(1, calls_made(tmp, name))
    parts = []
    for what, (u0, s0, w0), (u1, s1, w1) in zip(("relay", "recorder"), before, after):
        parts.append(f"{what} {1e6 * (u1 - u0) / calls:.1f} us user + {1e6 * (s1 - s0) / calls:.1f} us system, "
                     f"{(w1 - w0) / calls:.3f} switches a call")
    return f"{calls} calls; " + "; ".join(parts)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="crc-", dir="/tmp"))
    payloads.write(tmp)
    try:
        with Children() as children:
            backend, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
            for route in args.routes:
                if args.live:
                    line = live(children, tmp, binaries["loadgen"], backend.socket, route, args)
                    print(f"{route.partition('=')[0]} {args.method}, {args.callers} caller(s): {line}", flush=True)
                    continue
                calls, instructions = count(children, tmp, binaries["loadgen"], backend.socket, route, args)
                print(f"{route.partition('=')[0]} {args.method}, {args.callers} caller(s): {calls} calls, "
                      f"{instructions / max(1, calls):,.0f} instructions per call", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # its callgrind files and logs
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
