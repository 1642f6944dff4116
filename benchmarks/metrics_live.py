"""What `--metrics-listen` alone costs each process per call, live: the relay and its recorder
process under bench.py's C++ load generator, read from /proc.

Run with the project's venv, once per checkout to compare (the same machine, in turns):

    .venv/bin/python benchmarks/metrics_live.py [--tree DIR] [--method Version] [--seconds 3]

It starts the C++ backend, `DIR/.venv/bin/python -m cri_proxy run --metrics-listen ...` from
DIR (default: this checkout) with PYTHONPATH=DIR, and 32 callers for `--seconds`; then
prints the calls made, the recorder process's context switches (all its threads, voluntary
and not: how often it was woken), and the CPU each process spent per call (utime + stime
over the load's window), then scrapes `/metrics` until `cri_proxy_calls_total` holds every
call the load generator made and stops moving (or 30 s pass): the calls counted, the seconds
after the load ended that it stopped, and `cri_proxy_recorder_calls_lost_total`. CPU time
moves with the machine's load; the context switches and the ratio of the two builds' figures
in alternating runs move less.
"""

from __future__ import annotations

import argparse
import socket
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
from procs import Children, usage  # noqa: E402

SERVICE = "/runtime.v1.RuntimeService/"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to run (with its .venv)")
    parser.add_argument("--method", default="Version", help="Version (32 B) or ListContainers (26 KB)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=32)
    return parser.parse_args(argv)


def process_stats(pid: int) -> tuple[int, float]:
    """(context switches of all its threads, CPU seconds) of a live process."""
    user, system, switches = usage(pid)
    return switches, user + system


def scrape(path: Path) -> dict[str, float]:
    """The sums of each metric family's samples, from one GET /metrics over a unix socket."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(1 << 16), b""))
    sums: dict[str, float] = {}
    for line in data.split(b"\r\n\r\n", 1)[-1].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{", 1)[0].split(" ", 1)[0], line.rsplit(" ", 1)[1]
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def counted(path: Path, calls: int, ended: float) -> tuple[int, float, int]:
    """(calls the metrics counted once the count stopped moving, seconds after `ended` it
    stopped, calls lost). The count may exceed `calls`: the load generator counts the calls
    of its window, and its callers' first and last calls fall outside it."""
    deadline = time.monotonic() + 30
    last, since = -1, time.monotonic()
    while True:
        sums = scrape(path)
        seen = int(sums.get("cri_proxy_calls_total", 0))
        now = time.monotonic()
        if seen != last:
            last, since = seen, now
        elif (seen >= calls and now - since >= 0.5) or now > deadline:
            return seen, since - ended, int(sums.get("cri_proxy_recorder_calls_lost_total", 0))
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    tree = args.tree.resolve()
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="crim-", dir="/tmp"))
    payloads.write(tmp)
    with Children() as children:
        backend, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
        listen = tmp / "proxy.sock"
        proxy = children.start(["env", "-C", str(tree), f"PYTHONPATH={tree}", str(tree / ".venv/bin/python"), "-m",
                                "cri_proxy", "run", "--listen", f"unix://{listen}", "--runtime-endpoint",
                                f"unix://{backend.socket}", "--metrics-listen", f"unix://{tmp}/metrics.sock"],
                               tmp / "proxy.log")  # env execs the proxy: the pid is the relay's
        children_of = []
        deadline = time.monotonic() + 20
        while not (listen.exists() and children_of) and time.monotonic() < deadline:
            time.sleep(0.05)
            children_of = subprocess.run(["pgrep", "-P", str(proxy.pid)], capture_output=True,
                                         text=True).stdout.split()
        if not children_of:
            print(f"the proxy did not start its recorder process (see {tmp}/proxy.log)", file=sys.stderr)
            return 2
        recorder = int(children_of[0])
        start = time.time() + 0.5
        argv_ = [str(binaries["loadgen"]), f"unix:{listen}", SERVICE + args.method,
                 str(tmp / "requests" / f"{args.method}.bin"), str(args.callers), f"{start:.6f}",
                 f"{start + args.seconds:.6f}", str(tmp / "out.txt")]
        load = children.start(argv_, tmp / "loadgen.log")
        time.sleep(max(0.0, start - time.time()))
        rec0, relay0 = process_stats(recorder), process_stats(proxy.pid)
        load.wait()
        ended = time.monotonic()
        rec1, relay1 = process_stats(recorder), process_stats(proxy.pid)
        calls = int((tmp / "loadgen.log").read_text().splitlines()[-1].split()[0])
        seen, after, lost = counted(tmp / "metrics.sock", calls, ended)
    switches = rec1[0] - rec0[0]
    print(f"{tree.name} {args.method}: {calls} calls; recorder process: {switches} context switches "
          f"({switches / args.seconds:.0f}/s), {1e6 * (rec1[1] - rec0[1]) / max(1, calls):.1f} us CPU per call; "
          f"relay: {1e6 * (relay1[1] - relay0[1]) / max(1, calls):.1f} us CPU per call; "
          f"metrics counted {seen} calls {after:.2f} s after the load ended, {lost} lost")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
