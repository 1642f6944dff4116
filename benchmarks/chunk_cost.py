"""What one chunk of a warm `Version` call costs each side's byte handler, apart from sockets.

`handlers.py` times the handlers inside a running proxy, where every figure moves with the
machine's load; this plays the chunks a C++ gRPC client and backend send for one warm call
(captured from `benchmarks/build/loadgen` and `backend`: HEADERS, WINDOW_UPDATE, DATA and a
connection WINDOW_UPDATE from the client; HEADERS, DATA, trailers and WINDOW_UPDATE from the
runtime), each stream id new, through one handler with a stand-in connection whose writes
only drop the bytes. Modes: `relay` (Connection.forward_client's send and walk),
`translated` (RequestRelay.from_client of a v1 -> v1alpha2 translator), `translated-faults`
(the same with a fault rule that could take every Version call and never does: each warm
block's call is decided again instead of the block being swapped in alone),
`relay-runtime` (Connection.from_upstream), `translated-runtime` (ResponseRelay.from_upstream);
`metrics` and `metrics-runtime` are `relay` and `relay-runtime` with the tap `--metrics-listen`
alone attaches (the lean form, proxy.lean) shipping to a recorder link that is never sent
(the `sendmsg` every 20 ms is left out: see relay_count.py for the whole process).

    .venv/bin/python benchmarks/chunk_cost.py translated [--chunks 100000]
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python benchmarks/chunk_cost.py translated \\
        --chunks 3000 --callgrind      # then again with --chunks 1000: the difference / 2000 per chunk

An older checkout runs it with `env PYTHONPATH=OLD OLD/.venv/bin/python`. Prints the thread
CPU time per chunk (best of the run, so noisy on a loaded machine: prefer the counts).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.h2 import frames as h2
from cri_proxy.model.cri import parse_path
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.firstcall import FirstCallRoute
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.recorder_link import RecorderProcess
from cri_proxy.proxy.relaypair import RelayPair
from cri_proxy.proxy.responses import ResponseRelay
from cri_proxy.proxy.routing import Upstreams
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.proxy.translate import Translator

# A grpc-c++ 1.51 client's request blocks on one connection: the first, the second (it indexes
# grpc-timeout), then every later one (indexed fields only).
FIRST = bytes.fromhex(
    "40053a70617468222f72756e74696d652e76312e52756e74696d65536572766963652f56657273696f6e400a3a61"
    "7574686f72697479096c6f63616c686f73748386400c636f6e74656e742d74797065106170706c69636174696f6e"
    "2f677270634002746508747261696c6572734014677270632d6163636570742d656e636f64696e67176964656e74"
    "6974792c206465666c6174652c20677a6970400c677270632d74696d656f757402314d400a757365722d6167656e"
    "742d677270632d632b2b2f312e35312e3120677270632d632f32392e302e3020286c696e75783b2063687474703229")
SECOND = bytes.fromhex("c4c38386c2c1c0400c677270632d74696d656f75740636303130306dbf")
WARM = bytes.fromhex("c5c48386c3c2c1bebf")
REPLY = ("0000030104{sid}88c0bf0000250000{sid}00000000200a05302e312e30120a636f6e7461696e6572641a07"
         "76312e372e3234220276310000010105{sid}be00000408000000000000000009")


class Budget:
    allowed = 1 << 62  # the flood guard's allowance (proxy.floodguard): never reached here


class Loop:
    """The recorder link's event loop: the send it schedules never comes (the outbox only grows)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        pass


class StandIn:
    """What the handlers use of a Connection, its writes dropped."""

    feed_tap = RelayPair.feed_tap

    def __init__(self, link: str | None = None) -> None:
        self.id, self.tap, self.upstream = 1, None, object()
        self.lean = None
        if link:  # a recorder link as `run --metrics-listen` alone (or `--db`) makes it, its child never started
            db = pathlib.Path("never-opened.db") if link == "record" else None
            proc = RecorderProcess(RecordConfig(db=db), SessionInfo())
            if hasattr(proc._box, "set_limit"):
                proc._box.set_limit(1 << 40, 1 << 40)  # and no send before the timer
            else:  # an older checkout
                proc._box.limit = proc._box.thin_limit = proc._box.early = 1 << 40
            proc._loop = Loop()  # type: ignore[assignment]
            self.tap = proc.open(ConnectionInfo(1, None, None, "unix:///runtime.sock"))
            self.lean, self.lean_out = getattr(self.tap, "lean", None) or (None, None)  # RelayPair.watch
        self.open_streams: set[int] = set()
        self.preface_sent, self.server_in_block = True, False
        self.c2s, self.s2c = h2.FrameWalker().plain(), h2.FrameWalker().plain()
        self._inject: list[bytes] = []
        self._draining = False
        self.control = Budget()

    def send_upstream(self, data: bytes) -> None:
        pass

    def send_client(self, data: bytes) -> None:
        pass

    def flush_inject(self) -> None:
        pass

    def close_if_drained(self) -> None:
        pass

    def injectable(self) -> bool:
        return True


def request(sid: int) -> bytes:
    block = FIRST if sid == 1 else SECOND if sid == 3 else WARM
    return (h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, sid, block) + h2.window_update_frame(sid, 5)
            + h2.frame(h2.DATA, h2.FLAG_END_STREAM, sid, bytes.fromhex("00000000040a027631"))
            + h2.window_update_frame(0, 0x25))


def handler(mode: str, conn: Any) -> tuple[Callable[[bytes], None], Callable[[int], bytes]]:
    """The byte handler `mode` names, and the chunk it is fed for a stream."""
    def reply(sid: int) -> bytes:
        return bytes.fromhex(REPLY.format(sid=f"{sid:08x}"))
    if mode in ("relay", "metrics", "record"):
        return (lambda data: Connection.forward_client(conn, data)), request
    if mode in ("relay-runtime", "metrics-runtime", "record-runtime"):
        return (lambda data: Connection.from_upstream(conn, conn.upstream, data)), reply
    if mode == "translated-runtime":
        relay = ResponseRelay(conn, set(), lambda size: None, None)
        return (lambda data: relay.from_upstream(conn.upstream, data)), reply
    book = None if mode == "translated" else FaultBook(parse_rules([{
        "name": "rare", "match": {"method": "Version"}, "every": 10**9,
        "action": {"error": {"code": "UNAVAILABLE", "message": "never sent"}}}], "chunk_cost"))
    ups = Upstreams(pathlib.Path("runtime.sock"), translation=TranslationPolicy(
        lambda path: "v1alpha2" if parse_path(path).api == "v1" else None, faults=book))
    route = FirstCallRoute(ups)
    route.conn, route.service, route.replay = conn, "runtime", None
    translator = Translator(route, ups.translation, "v1", "v1alpha2", None)  # type: ignore[arg-type]
    route.translator = translator
    return translator.requests(), request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("relay", "translated", "translated-faults", "relay-runtime",
                                         "translated-runtime", "metrics", "metrics-runtime", "record",
                                         "record-runtime"))
    parser.add_argument("--chunks", type=int, default=100000, help="chunks timed, after three to warm up")
    parser.add_argument("--callgrind", action="store_true", help="under callgrind: count the timed chunks only")
    args = parser.parse_args()
    conn = StandIn(args.mode.partition("-")[0] if args.mode.startswith(("metrics", "record")) else None)
    handle, chunk = handler(args.mode, conn)
    spent = timed(handle, [chunk(2 * i + 1) for i in range(args.chunks + 3)], args.callgrind)
    print(f"{args.mode}: {spent / args.chunks / 1000:.2f} us a chunk ({args.chunks} chunks)")


def timed(handle: Callable[[Any], object], items: list[Any], callgrind: bool) -> int:
    """Thread CPU nanoseconds `handle` took over `items` after the first three (to warm up),
    under callgrind (`callgrind`) with instrumentation on for those alone."""
    for item in items[:3]:
        handle(item)
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=False)
    start = time.thread_time_ns()
    for item in items[3:]:
        handle(item)
    spent = time.thread_time_ns() - start
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=False)
    return spent


if __name__ == "__main__":
    main()
