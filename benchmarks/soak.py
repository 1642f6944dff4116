"""A steady rate of calls through the recording proxy: is every call recorded, memory flat?

Run with the project's venv: `.venv/bin/python benchmarks/soak.py [--rate 1000] [--seconds 60]
[--method ListContainers]`. It starts the C++ backend (built as bench.py builds it), the proxy
with `--db` in a temp dir, and paced callers (grpc.aio, raw bytes, the bench's real CRI
messages); it prints the proxy's and its recorder's RSS every 5 s, then stops the proxy and
compares the calls made with the calls recorded and lost. Exit status 1 when a call was not
recorded or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc
import payloads
import psutil
import toolchain
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


async def drive(socket: Path, method: str, request: bytes, rate: float, seconds: float, proxy_pid: int
                ) -> tuple[int, int]:
    made = failed = started = 0
    async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}")
        start = time.monotonic()
        next_report = start + 5
        pending: set[asyncio.Task[bytes]] = set()
        while (now := time.monotonic()) < start + seconds:
            # Paced by the calls started, not those answered: a client that falls behind must
            # not make up for it with ever larger bursts (it would flood, not soak).
            due = int((now - start) * rate) - started
            started += max(0, due)
            for _ in range(max(0, due)):
                task = asyncio.ensure_future(call(request, timeout=60))
                pending.add(task)
            if pending:
                done = {t for t in pending if t.done()}
                for task in done:
                    if task.exception() is None:
                        made += 1
                    else:
                        failed += 1
                pending -= done
            if now >= next_report:
                next_report += 5
                print(f"  {now - start:5.0f} s  {started:7d} calls started, {made:7d} answered  RSS MB (proxy, recorder): "
                      f"{', '.join(f'{m:.1f}' for m in rss_mb(proxy_pid))}", flush=True)
            await asyncio.sleep(0.002)
        for task in pending:
            try:
                await task
                made += 1
            except grpc.aio.AioRpcError:
                failed += 1
    return made, failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--method", default="ListContainers",
                        help="Version, ListContainers (26 KB replies, the default) or ListContainerStats (1 MB)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get the C++ build deps")
    args = parser.parse_args(argv)
    toolchain.ensure_deps(allow_install=not args.no_install)
    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="cris-", dir="/tmp"))
    try:
        payloads.write(tmp)
        request = (tmp / "requests" / f"{args.method}.bin").read_bytes()
        with Children() as children:
            direct, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
            proxy = start_proxy(children, tmp, direct.socket, PROXY_CMD + " --db {tmp}/calls.db")
            assert proxy.pid is not None
            print(f"soak: {args.rate:g} {args.method} calls/s for {args.seconds:g} s through the recording proxy")
            made, failed = asyncio.run(drive(proxy.socket, args.method, request, args.rate, args.seconds, proxy.pid))
            peak = peak_rss_mb(process_tree(proxy.pid))
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
          f"{lost} lost; integrity {integrity}; database {size:.1f} MB; peak RSS (proxy + recorder) {peak:.1f} MB")
    return 0 if failed == 0 and lost == 0 and rows == made else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
