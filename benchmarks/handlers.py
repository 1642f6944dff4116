"""What the relay's own code costs a call, apart from the machine's noise: CPU in its byte handlers.

`bench.py` measures latency and throughput, which on a shared 2-core VM move by 10-20% from
window to window whatever the proxy does. This measures the part the proxy's code decides:
the thread CPU time spent in each side's byte handler (`End.data_received`) minus the time
spent in the socket writes it makes, per call, for several builds and routes in the same
run, the routes taking turns in short windows (the order rotating each round), the median
over rounds. Thread CPU time leaves out time the process waited for a core. The calls are
`Version` unless `--method` names another of bench.py's workloads (`ListContainers`: 26 KB
replies, `ListContainerStats`: 1 MB).

```
.venv/bin/python benchmarks/handlers.py relay=.:relay faults=.:faults translated=.:translated \\
    base-faults=../base:faults base-translated=../base:translated --rounds 6 --callers 1
```
Each route is NAME=CHECKOUT:MODE, CHECKOUT a cri-proxy checkout with its .venv, MODE one of
`direct` (no proxy), `relay`, `faults` (bench.py's NO_MATCH_RULES), `unread` (only its client
rule, so that no rule can take a call of the load generator's connection:
`proxy/faultwire.could_take`), `translated` (in front of the v1alpha2-only backend). Columns:
p50 and RPC/s (as noisy as bench.py's), then the client side's and the runtime side's handler
CPU per call (microseconds), the part to compare.

Run with `--serve STATS -- ARGS...`, this file is the proxy: `cri-proxy ARGS` with the two
handlers timed, the sums written to STATS on SIGUSR1.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("direct", "relay", "faults", "unread", "translated")


def serve(stats_path: str, argv: list[str]) -> None:
    """Run `cri-proxy argv` with End.data_received and the two socket writes timed."""
    from cri_proxy.cli.app import main
    from cri_proxy.proxy import connection, ends

    sums = {key: [0, 0] for key in ("client", "upstream", "to_upstream", "to_client")}  # calls, CPU ns
    clock = time.thread_time_ns

    def timed(key: str, method: Any) -> Any:
        def run(self: Any, data: bytes) -> None:
            start = clock()
            method(self, data)
            total = sums[key if key.startswith("to_") else ("client" if self.is_client else "upstream")]
            total[0] += 1
            total[1] += clock() - start
        return run

    ends.End.data_received = timed("read", ends.End.data_received)
    connection.Connection.send_upstream = timed("to_upstream", connection.Connection.send_upstream)
    connection.Connection.send_client = timed("to_client", connection.Connection.send_client)
    signal.signal(signal.SIGUSR1, lambda *_: Path(stats_path).write_text(json.dumps(sums)))
    sys.argv = ["cri-proxy", *argv]
    main()


def _stats(proc: Any, path: Path) -> dict[str, list[int]]:
    path.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    for _ in range(500):
        time.sleep(0.01)
        try:
            found: dict[str, list[int]] = json.loads(path.read_text())
            return found
        except (OSError, ValueError):
            continue
    raise RuntimeError(f"no handler figures from pid {proc.pid}")


def measure(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    import payloads
    import toolchain
    from bench import NO_MATCH_RULES
    from paths import start_backend
    from procs import Children, wait_for_socket

    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="crih-", dir="/tmp"))
    payloads.write(tmp)
    (tmp / "faults.yaml").write_text(NO_MATCH_RULES)
    (tmp / "unread.yaml").write_text("".join(line + "\n" for line in NO_MATCH_RULES.splitlines()
                                             if "- {" not in line or "client:" in line))
    with Children() as children:
        direct, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
        old, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10, "v1alpha2")
        routes: list[tuple[str, Path, Any]] = []
        for spec in args.routes:
            name, _, rest = spec.partition("=")
            checkout, _, mode = rest.rpartition(":")
            if mode not in MODES:
                raise SystemExit(f"handlers: {spec}: MODE must be one of {', '.join(MODES)}")
            if mode == "direct":
                routes.append((name, direct.socket, None))
                continue
            root = Path(checkout).resolve()
            sock, log = tmp / f"{name}.sock", tmp / f"{name}.log"
            runtime = old.socket if mode == "translated" else direct.socket
            extra = ["--faults", str(tmp / f"{mode}.yaml")] if mode in ("faults", "unread") else []
            proc = children.start(["env", f"PYTHONPATH={root}", str(root / ".venv/bin/python"), __file__,
                                   "--serve", str(tmp / f"{name}.json"), "--", "run", "--listen", f"unix://{sock}",
                                   "--runtime-endpoint", f"unix://{runtime}", *extra], log)
            wait_for_socket(sock, proc, log, timeout=30)
            routes.append((name, sock, proc))
        _rounds(args, binaries["loadgen"], tmp, routes, children)


def _rounds(args: argparse.Namespace, loadgen: Path, tmp: Path, routes: list[tuple[str, Path, Any]],
            children: Any) -> None:
    figures: dict[str, dict[str, list[float]]] = {name: {k: [] for k in ("p50", "rps", "client", "upstream")}
                                                  for name, _, _ in routes}
    for turn in range(args.rounds + 1):  # the first round warms every route up and is not counted
        shift = turn % len(routes)
        for name, sock, proc in routes[shift:] + routes[:shift]:
            before = _stats(proc, tmp / f"{name}.json") if proc else None
            start = time.time() + 0.3
            seconds = args.seconds if turn else 0.3
            out = tmp / "latencies.txt"
            run = children.start([str(loadgen), f"unix:{sock}", f"/runtime.v1.RuntimeService/{args.method}",
                                  str(tmp / f"requests/{args.method}.bin"), str(args.callers), f"{start:.6f}",
                                  f"{start + seconds:.6f}", str(out)], tmp / "loadgen.log")
            run.wait(timeout=120)
            latencies = sorted(int(x) for x in out.read_text().split())
            if not turn or not latencies:
                continue
            row = figures[name]
            row["p50"].append(latencies[len(latencies) // 2] / 1000)
            row["rps"].append(len(latencies) / seconds)
            if proc and before:
                after, calls = _stats(proc, tmp / f"{name}.json"), len(latencies)
                for side, write in (("client", "to_upstream"), ("upstream", "to_client")):
                    spent = after[side][1] - before[side][1] - (after[write][1] - before[write][1])
                    row[side].append(spent / calls / 1000)
    _print(figures)


def _print(figures: dict[str, dict[str, list[float]]]) -> None:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):8.1f}" if values else "       -"

    print(f"{'route':>16} {'p50 us':>8} {'RPC/s':>8} {'client side us/call':>20} {'runtime side us/call':>21}")
    for name, row in figures.items():
        print(f"{name:>16} {median(row['p50'])} {median(row['rps'])} {median(row['client']):>20} "
              f"{median(row['upstream']):>21}")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        serve(argv[1], argv[3:])  # --serve STATS -- ARGS...
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("routes", nargs="+", metavar="NAME=CHECKOUT:MODE")
    parser.add_argument("--rounds", type=int, default=6, help="counted rounds (default 6)")
    parser.add_argument("--seconds", type=float, default=1.0, help="measured seconds per route and round (default 1)")
    parser.add_argument("--callers", type=int, default=1, help="closed-loop callers on one connection (default 1)")
    parser.add_argument("--method", default="Version", choices=("Version", "ListContainers", "ListContainerStats"),
                        help="the call measured: bench.py's version, list_100 or stats_1mb (default Version)")
    measure(parser.parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
