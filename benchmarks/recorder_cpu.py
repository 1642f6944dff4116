"""The recorder process's CPU per call, measured offline: a captured link stream replayed into a Worker.

Run with the project's venv:

    .venv/bin/python benchmarks/recorder_cpu.py capture /tmp/version.cap [--method Version] [--seconds 1]
    .venv/bin/python benchmarks/recorder_cpu.py replay /tmp/version.cap [--repeat 5] [--profile]
    .venv/bin/python benchmarks/recorder_cpu.py tap /tmp/version.cap [--lean] [--repeat 5] [--profile]

`capture` starts the C++ backend and load generator (bench.py's, built as it builds them) with
a byte tee between them that keeps what each connection carried, chunk by chunk, as a relay
reads it. `replay` plays those chunks, as the proxy would ship them (OPEN, CHUNK stamped with
the time it is sent, CLOSED, STOP), into a `Worker` with a real Recorder and SQLite file in a
temp dir, `--repeat` times over (each time as new connections), and prints the worker
thread's CPU time per call it recorded (the tap, the pipeline and the writer: everything the
recorder process does for a call, without its start-up), and with `--profile` cProfile's top
functions. The socket is fed from another thread, whose CPU is not counted. `tap` plays the
same chunks straight into a RecordingTap whose sink only counts the calls (`--lean`: the
server's bytes as the relay ships them for metrics alone): the tap's share of `replay`.

It uses only what an older checkout has too (link messages, `make_recorder`, `Worker`), so the
same capture replays into both, one after the other on the same machine:
`env PYTHONPATH=OLD OLD/.venv/bin/python benchmarks/recorder_cpu.py replay FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVICE = "/runtime.v1.RuntimeService/"
READ_SIZE = 256 << 10
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
Event = tuple[str, int, bool, bytes]  # ("open" | "chunk" | "closed", conn, from the client, bytes)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="record what the C++ ends send each other")
    cap.add_argument("out", type=Path)
    cap.add_argument("--method", default="Version", help="Version (32 B) or ListContainers (26 KB)")
    cap.add_argument("--seconds", type=float, default=1.0)
    cap.add_argument("--callers", type=int, default=32)
    rep = sub.add_parser("replay", help="replay a capture into a Worker, print CPU us per call")
    rep.add_argument("capture", type=Path)
    rep.add_argument("--repeat", type=int, default=3, help="times the capture is played (default 3)")
    rep.add_argument("--profile", action="store_true", help="cProfile the worker, print the top functions")
    rep.add_argument("--flush-interval", type=float, help="the recorder's (default: its own, 0.1 s); a long one "
                     "makes each batch a full one (by calls or bytes) as in a flood, also under callgrind, "
                     "where 0.1 s holds some 50 times fewer calls")
    rep.add_argument("--callgrind", action="store_true", help="under valgrind --tool=callgrind --instr-atstart=no: "
                     "count the instructions of the worker's run only (callgrind_control -i on/off around it)")
    tap = sub.add_parser("tap", help="replay a capture into the tap alone (no link, no writer), print CPU us per call")
    tap.add_argument("capture", type=Path)
    tap.add_argument("--repeat", type=int, default=3, help="times the capture is played (default 3)")
    tap.add_argument("--lean", action="store_true", help="the server's bytes in the relay's lean form (metrics only)")
    tap.add_argument("--profile", action="store_true", help="cProfile the tap, print the top functions")
    tap.add_argument("--callgrind", action="store_true", help="as for replay: count the tap's instructions only")
    return parser.parse_args(argv)


# -- capture ------------------------------------------------------------------------------


async def _tee(listen: Path, runtime: Path, events: list[Event]) -> asyncio.Server:
    conns = iter(range(1, 1 << 30))

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: int, client: bool) -> None:
        skip = len(PREFACE) if client else 0  # the relay's tap never sees the client's preface
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            if skip:
                data, skip = data[skip:], max(0, skip - len(data))
            if data:
                events.append(("chunk", conn, client, data))
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(conns)
        events.append(("open", conn, True, b""))
        up_reader, up_writer = await asyncio.open_unix_connection(str(runtime))
        await asyncio.gather(pump(reader, up_writer, conn, True), pump(up_reader, writer, conn, False))
        events.append(("closed", conn, True, b""))

    return await asyncio.start_unix_server(serve, str(listen))


def capture(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(HERE))
    import payloads
    import toolchain
    from paths import start_backend
    from procs import Children

    binaries = toolchain.build(HERE, HERE / "build")
    tmp = Path(tempfile.mkdtemp(prefix="cric-", dir="/tmp"))
    payloads.write(tmp)
    events: list[Event] = []
    with Children() as children:
        backend, _ = start_backend(children, binaries["backend"], tmp, tmp / "replies", 10)
        loop = asyncio.new_event_loop()
        listen = tmp / "tee.sock"
        server = loop.run_until_complete(_tee(listen, backend.socket, events))
        start = time.time() + 0.3
        argv = [str(binaries["loadgen"]), f"unix:{listen}", SERVICE + args.method,
                str(tmp / "requests" / f"{args.method}.bin"), str(args.callers), f"{start:.6f}",
                f"{start + args.seconds:.6f}", str(tmp / "out.txt")]
        proc = children.start(argv, tmp / "loadgen.log")
        while proc.poll() is None:
            loop.run_until_complete(asyncio.sleep(0.05))
        loop.run_until_complete(asyncio.sleep(0.2))
        server.close()
        loop.close()
    calls = (tmp / "loadgen.log").read_text().splitlines()[-1].split()[0]
    args.out.write_bytes(pickle.dumps(events))
    print(f"captured {calls} {args.method} calls, {len(events)} events, "
          f"{sum(len(e[3]) for e in events)} bytes into {args.out}")
    return 0


# -- replay -------------------------------------------------------------------------------


def _feed(sock: socket.socket, events: list[Event], repeat: int) -> None:
    from cri_proxy.model import link

    out = bytearray()
    for round_ in range(repeat):
        base = round_ * 100_000
        for kind, conn, client, data in events:
            if kind == "open":
                out += link.open_message(base + conn, 4242, 0, "unix:///run/backend.sock")
            elif kind == "closed":
                out += link.closed_message(base + conn, time.monotonic(), None)
            else:
                out += link.chunk_head(base + conn, client, time.time(), time.monotonic(), len(data)) + data
            if len(out) >= 1 << 16:
                sock.sendall(out)
                out.clear()
    sock.sendall(out + link.message(link.STOP))


def replay(args: argparse.Namespace) -> int:
    from cri_proxy.model.options import RecordConfig
    from cri_proxy.model.session import SessionInfo
    from cri_proxy.recorder.setup import make_recorder
    from cri_proxy.recorder import worker as worker_module
    from cri_proxy.recorder.worker import Worker

    events: list[Event] = pickle.loads(args.capture.read_bytes())
    with tempfile.TemporaryDirectory(prefix="crir-") as tmp:
        db = Path(tmp) / "calls.db"
        config = RecordConfig(db=db) if args.flush_interval is None else \
            RecordConfig(db=db, flush_interval_s=args.flush_interval)
        recorder = make_recorder(config, SessionInfo(listen="unix:///run/p.sock"), thread=False)
        ours, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # as the proxy's end of the link
        try:  # the backlog's bound, by its name in this build (older checkouts: buffer_bytes)
            worker = Worker(ours, recorder, budget_bytes=1 << 40)
        except TypeError:
            worker = Worker(ours, recorder, buffer_bytes=1 << 40)  # type: ignore[call-arg]
        worker.skim = lambda *args: None  # type: ignore[method-assign]  # every call recorded, however slow
        feeder = threading.Thread(target=_feed, args=(theirs, events, args.repeat), daemon=True)
        tune = getattr(worker_module, "tune_gc", None)  # as the recorder process does, where it does
        if tune is not None:
            tune()
        cpu, wall, profile = timed_run(worker.run, feeder, args.callgrind, args.profile)
        with sqlite3.connect(db) as conn:
            calls, lost = conn.execute("SELECT sum(calls_recorded), sum(calls_lost) FROM sessions").fetchone()
    print(f"{calls} calls recorded, {lost} lost; worker thread CPU {cpu:.3f} s, wall {wall:.3f} s: "
          f"{1e6 * cpu / max(1, calls):.1f} us CPU per call")
    if profile is not None:
        import pstats

        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


def tap_only(args: argparse.Namespace) -> int:
    """The capture fed straight into a RecordingTap whose sink only counts: the tap's share of
    `replay` (frames, HPACK, messages, the RecordedCall), on the same calls."""
    from cri_proxy.proxy.tap import ConnectionInfo
    from cri_proxy.recorder import worker as worker_module
    from cri_proxy.recorder.tap import RecordingTap

    events: list[Event] = pickle.loads(args.capture.read_bytes())
    if args.lean:  # as the relay ships them with --metrics-listen alone (proxy.lean), made before the clock starts
        from cri_proxy.proxy.lean import LeanWalker

        walkers: dict[int, LeanWalker] = {}
        events = [(kind, conn, client, data if kind != "chunk" or client
                   else walkers.setdefault(conn, LeanWalker()).feed(data)) for kind, conn, client, data in events]
    calls = [0]

    class Counted:
        def submit(self, call: object) -> None:
            calls[0] += 1

    now = [0.0]
    tap = RecordingTap(Counted(), clock=lambda: 1e9 + now[0], timer=lambda: now[0], lean=args.lean)

    def run() -> None:
        for round_ in range(args.repeat):
            conns = {}
            for kind, conn, client, data in events:
                now[0] += 1e-5
                if kind == "open":
                    conns[conn] = tap.open(ConnectionInfo(round_ * 100_000 + conn, 4242, 0, "unix:///run/b.sock"))
                elif kind == "closed":
                    conns.pop(conn).closed(None)
                elif data:
                    (conns[conn].client_bytes if client else conns[conn].server_bytes)(data)

    tune = getattr(worker_module, "tune_gc", None)  # as the recorder process does, where it does
    if tune is not None:
        tune()
    cpu = time.thread_time()
    _instrument(args.callgrind, "on")
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run)
    else:
        run()
    _instrument(args.callgrind, "off")
    cpu = time.thread_time() - cpu
    print(f"{calls[0]} calls through the tap{' (lean)' if args.lean else ''}: CPU {cpu:.3f} s, "
          f"{1e6 * cpu / max(1, calls[0]):.1f} us per call")
    if args.profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


def timed_run(run: Callable[[], None], feeder: threading.Thread, callgrind: bool,
              profiled: bool) -> tuple[float, float, Any]:
    """`run()` in this thread with `feeder` started beside it: this thread's CPU seconds, the
    wall seconds and the cProfile.Profile (or None), with callgrind counting only `run`."""
    profile = None
    if profiled:
        import cProfile

        profile = cProfile.Profile()
    cpu, wall = time.thread_time(), time.perf_counter()
    feeder.start()
    _instrument(callgrind, "on")
    if profile is not None:
        profile.runcall(run)
    else:
        run()
    _instrument(callgrind, "off")
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    feeder.join()
    return cpu, wall, profile


def _instrument(on: bool, state: str) -> None:
    if on:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], capture_output=True, check=False)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    return {"capture": capture, "replay": replay, "tap": tap_only}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
