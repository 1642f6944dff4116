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

A route is NAME=TREE, with `:metrics` for `--metrics-listen` alone (the lean link). How many
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402
import toolchain  # noqa: E402
from paths import start_backend  # noqa: E402
from procs import Children, wait_for_socket  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("routes", nargs="+", help="NAME=TREE or NAME=TREE:metrics")
    parser.add_argument("--method", default="Version")
    parser.add_argument("--callers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    return parser.parse_args(argv)


def count(children: Children, tmp: Path, loadgen: Path, backend: Path, route: str,
          args: argparse.Namespace) -> tuple[int, int]:
    """(calls made, instructions of the relay process) for one route."""
    name, _, where = route.partition("=")
    tree_arg, _, mode = where.partition(":")
    tree = Path(tree_arg).resolve()
    listen, out = tmp / f"{name}.sock", tmp / f"{name}.callgrind"
    extra = ["--metrics-listen", f"unix://{tmp}/{name}-m.sock"] if mode == "metrics" else []
    proxy = children.start(["env", "-C", str(tree), f"PYTHONPATH={tree}", "valgrind", "--tool=callgrind",
                            "--instr-atstart=no", f"--callgrind-out-file={out}", str(tree / ".venv/bin/python"),
                            "-m", "cri_proxy", "run", "--listen", f"unix://{listen}", "--runtime-endpoint",
                            f"unix://{backend}", *extra], tmp / f"{name}.log")  # env execs: the pid is the relay's
    wait_for_socket(listen, proxy, tmp / f"{name}.log", timeout=120)
    time.sleep(2.0)  # its recorder process started, its first connections' work done
    subprocess.run(["callgrind_control", "-i", "on", str(proxy.pid)], capture_output=True, check=True)
    start = time.time() + 0.5
    load = children.start([str(loadgen), f"unix:{listen}", SERVICE + args.method,
                           str(tmp / "requests" / f"{args.method}.bin"), str(args.callers), f"{start:.6f}",
                           f"{start + args.seconds:.6f}", str(tmp / f"{name}.lat")], tmp / f"{name}-load.log")
    load.wait()
    subprocess.run(["callgrind_control", "-i", "off", str(proxy.pid)], capture_output=True, check=True)
    subprocess.run(["callgrind_control", "-d", str(proxy.pid)], capture_output=True, check=True)  # the load's part
    children.stop(proxy)
    calls = int((tmp / f"{name}-load.log").read_text().splitlines()[-1].split()[0])
    totals = [int(line.split()[1]) for part in tmp.glob(f"{name}.callgrind*")
              for line in part.read_text().splitlines() if line.startswith("totals:")]
    return calls, max(totals)  # the dump holds all the counted work; the part written at exit none


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="crc-", dir="/tmp"))
    payloads.write(tmp)
    try:
        with Children() as children:
            backend, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
            for route in args.routes:
                calls, instructions = count(children, tmp, binaries["loadgen"], backend.socket, route, args)
                print(f"{route.partition('=')[0]} {args.method}, {args.callers} caller(s): {calls} calls, "
                      f"{instructions / max(1, calls):,.0f} instructions per call", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # its callgrind files and logs
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
