"""The proxy's end of a recorder link, played by a test: a real Worker (recorder.loop) on the
other end of a socketpair, in a thread, with a real Recorder and SQLite file, fed real HTTP/2
frames stamped as the relay stamps them."""

from __future__ import annotations

import pathlib
import socket
import threading
import time
from collections.abc import Iterator

from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.h2 import frames as h2
from cri_proxy.model import link
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.loop import Worker
from cri_proxy.recorder.setup import make_recorder

PATH = "/runtime.v1.RuntimeService/ContainerStatus"
HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "localhost"),
           ("content-type", "application/grpc"), ("te", "trailers")]


class Proxy:
    """The proxy's end of the link."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0
        self.reader = link.Reader()
        self.encoder = Encoder()
        self.worker: Worker | None = None  # the recorder's end, when the test runs one
        self.worker_thread = threading.Thread()  # the thread it runs on

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def chunk(self, from_client: bool, data: bytes, ago: float = 0.0) -> None:
        """Stamped as the relay does (`ago`: as if relayed that many seconds ago)."""
        self.send(link.chunk_head(1, from_client, time.time() - ago, time.monotonic() - ago, len(data)) + data)

    def call(self, stream_id: int, answer: bool = True, ago: float = 0.0) -> None:
        request = HeadersFrame(stream_id, data=self.encoder.encode(HEADERS), flags=["END_HEADERS"]).serialize()
        request += DataFrame(stream_id, data=b"\x00\x00\x00\x00\x02\x0a\x00", flags=["END_STREAM"]).serialize()
        self.chunk(True, bytes(request), ago)
        if answer:
            self.chunk(False, h2.grpc_error_frame(stream_id, 5, "no such container"), ago)

    def stats_until(self, done: type[object] | None = None, **want: int) -> link.Stats:
        """Reads STATS until one acknowledges everything sent and matches `want`."""
        got: list[link.Stats] = []

        def take(kind: int, view: memoryview, start: int, stop: int) -> None:
            if kind == link.STATS:
                got.append(link.read_stats(view, start, stop))

        while True:
            data = self.sock.recv(1 << 16)
            assert data, "the worker closed the link"
            self.reader.feed(data, take)
            for report in got:
                fields = {"recorded": report.stats.recorded, "lost": report.stats.lost, "pending": report.pending}
                if report.received == self.sent and all(fields[k] == v for k, v in want.items()):
                    return report
            got.clear()


def linked_worker(tmp_path: pathlib.Path, session: SessionInfo,
            resume: link.Resume | None) -> Iterator[tuple[Proxy, pathlib.Path, SessionInfo]]:
    path = tmp_path / "calls.db"
    ours, theirs = socket.socketpair()
    ours.settimeout(20)
    recorder = make_recorder(RecordConfig(db=path, flush_interval_s=0.02), session, thread=False, resume=resume)
    proxy = Proxy(ours)
    proxy.worker = Worker(theirs, recorder)
    worker = proxy.worker_thread = threading.Thread(target=proxy.worker.run)
    worker.start()
    proxy.send(link.open_message(1, 42, 0, "unix:///run/rt.sock"))
    try:
        yield proxy, path, session
    finally:
        proxy.send(link.message(link.STOP))
        worker.join(20)
        ours.close()
        theirs.close()
    assert not worker.is_alive()
