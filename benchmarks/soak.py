"""A steady rate of calls through the recording proxy: is every call recorded, memory flat?

Run with the project's venv: `.venv/bin/python benchmarks/soak.py [--rate 1000] [--seconds 60]
[--method ListContainers] [--proxy-cmd CMD]`. It starts the C++ backend and load generator
(built as bench.py builds them), the proxy with `--db` in a temp dir, and paced callers: two
load generator processes (`rate=N`: open loop, a call started every 1/N s whatever is still
under way; a Python client cannot pace 5,000 calls/s on two cores), sending the bench's real
CRI messages. It prints the proxy's and its recorder's RSS every 5 s, then stops the proxy
(SIGTERM, once the recorder has caught up) and compares the calls made with the calls
recorded and lost. `--proxy-cmd` runs another build (as flood.py's `--route`, `{db}` the
database). Exit status 1 when a call was not recorded or failed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import payloads
import psutil
import toolchain
from measure import settle
from paths import PROXY_CMD, start_backend, start_proxy
from procs import Children, peak_rss_mb, process_tree

HERE = Path(__file__).resolve().parent


def rss_mb(pid: int) -> list[float]:
    out = []
    for proc in process_tree(pid):
        try:
            out.append(proc.memory_info().rss / 1e6)
        except psutil.NoSuchProcess:
            pass
    return out


def drive(children: Children, loadgen: Path, socket: Path, method: str, request: Path, rate: float,
          seconds: float, proxy_pid: int, tmp: Path, clients: int = 2) -> tuple[int, int]:
    """Paced callers for `seconds`: the C++ load generator at `rate` calls/s in all (open loop:
    paced by the calls started, not those answered, so a client that falls behind never makes
    up for it with ever larger bursts: it would flood, not soak); (calls answered, failed)."""
    start = time.time() + 0.5
    end = start + seconds
    runs = []
    for i in range(clients):
        log = tmp / f"soak{i}.log"
        argv = [str(loadgen), f"unix:{socket}", f"/runtime.v1.RuntimeService/{method}", str(request), "1",
                f"{start:.6f}", f"{end:.6f}", str(tmp / f"soak{i}.txt"), f"rate={rate / clients:g}"]
        runs.append((children.start(argv, log), log))
    next_report = start + 5
    while time.time() < end:
        time.sleep(max(0.0, min(next_report, end) - time.time()))
        if time.time() >= next_report:
            print(f"  {next_report - start:5.0f} s  RSS MB (proxy, recorder): "
                  f"{', '.join(f'{m:.1f}' for m in rss_mb(proxy_pid))}", flush=True)
            next_report += 5
    made = failed = 0
    for proc, log in runs:
        proc.wait(timeout=120)
        lines = log.read_text().splitlines()
        print("\n".join(f"  loadgen: {line}" for line in lines if line.startswith("first error")), flush=True)
        counts = lines[-1].split()
        made, failed = made + int(counts[0]), failed + int(counts[1])
    return made, failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--method", default="ListContainers",
                        help="Version, ListContainers (26 KB replies, the default) or ListContainerStats (1 MB)")
    parser.add_argument("--proxy-cmd", default=PROXY_CMD + " --db {db}",
                        help="the proxy's command ({python} {listen} {runtime} {db} filled in)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get the C++ build deps")
    args = parser.parse_args(argv)
    toolchain.ensure_deps(allow_install=not args.no_install)
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="cris-", dir="/tmp"))
    try:
        payloads.write(tmp)
        with Children() as children:
            direct, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
            proxy = start_proxy(children, tmp, direct.socket, args.proxy_cmd.replace("{db}", str(tmp / "calls.db")))
            assert proxy.pid is not None
            print(f"soak: {args.rate:g} {args.method} calls/s for {args.seconds:g} s through the recording proxy")
            made, failed = drive(children, binaries["loadgen"], proxy.socket, args.method,
                                 tmp / "requests" / f"{args.method}.bin", args.rate, args.seconds, proxy.pid, tmp)
            tree = process_tree(proxy.pid)
            drain = settle(tree)
            peak = peak_rss_mb(tree)
            psutil.Process(proxy.pid).send_signal(signal.SIGTERM)
            psutil.Process(proxy.pid).wait(60)
        with sqlite3.connect(f"file:{tmp}/calls.db?mode=ro", uri=True) as conn:
            recorded, lost = conn.execute("SELECT sum(calls_recorded), sum(calls_lost) FROM sessions").fetchone()
            rows = conn.execute("SELECT count(*) FROM calls WHERE method = ?", (args.method,)).fetchone()[0]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        size = (tmp / "calls.db").stat().st_size / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"soak: {made} calls made ({failed} failed), {rows} {args.method} rows; session: {recorded} recorded, "
          f"{lost} lost; integrity {integrity}; database {size:.1f} MB; peak RSS (proxy + recorder) {peak:.1f} MB; "
          f"recorder caught up {drain:.1f} s after the last call")
    return 0 if failed == 0 and lost == 0 and rows == made else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
