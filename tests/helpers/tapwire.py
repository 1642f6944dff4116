"""A connection's tap fed with hand-made frames, for the tap's tests (recorder.tap, recorder.tapcalls)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Direction, RecordedCall
from cri_proxy.model.sink import MemorySink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap, ReferenceDecoder


def messages(call: RecordedCall, direction: Direction) -> list[bytes]:
    found = [m for m in call.messages if m.direction is direction]
    assert [m.index for m in found] == list(range(len(found)))
    return [m.data for m in found]



class RaisingSink:
    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, call: RecordedCall) -> None:
        self.submitted += 1
        raise RuntimeError("the recorder is broken")


def prefixed(data: bytes, compressed: bool = False) -> bytes:
    return bytes([compressed]) + len(data).to_bytes(4, "big") + data


class Wire:
    """One connection's tap, fed with frames made by hyperframe: walked by the relay's FrameWalker
    (`feed="frames"`), or as bytes the tap walks itself (recorder.walk), whole or cut into
    chunks of 1 to 40 bytes (`feed="bytes"`, `"chunks"`)."""

    def __init__(self, decoder: str = "fast", sink: Any = None, feed: str = "frames") -> None:
        self.sink = sink if sink is not None else MemorySink()
        kwargs: dict[str, Any] = {"decoder": ReferenceDecoder} if decoder == "reference" else {}
        self.tap: ConnectionRecorder = RecordingTap(self.sink, **kwargs).open(
            ConnectionInfo(7, 100, 200, "unix:///up.sock"))
        self.client_enc, self.server_enc = Encoder(), Encoder()
        self.feed = feed
        self.rng = random.Random(len(feed))

    def _fed(self, frames: tuple[Any, ...], into: Callable[[list[h2.Frame]], None],
             as_bytes: Callable[[bytes], None]) -> None:
        if self.feed == "frames":
            into(self.walked(frames))
            return
        data = b"".join(bytes(f.serialize()) for f in frames)
        if self.feed == "bytes":
            as_bytes(data)
            return
        pos = 0
        while pos < len(data):
            step = self.rng.randint(1, 40)
            as_bytes(data[pos:pos + step])
            pos += step

    @staticmethod
    def walked(frames: tuple[Any, ...]) -> list[h2.Frame]:
        walker = h2.FrameWalker(frozenset(range(256)))
        out = walker.feed(b"".join(bytes(f.serialize()) for f in frames))
        assert walker.at_boundary and len(out) == len(frames)
        return out

    def client(self, *frames: Any) -> None:
        self._fed(frames, self.tap.client_frames, self.tap.client_bytes)

    def server(self, *frames: Any) -> None:
        self._fed(frames, self.tap.server_frames, self.tap.server_bytes)

    def request(self, stream_id: int, path: str = "/runtime.v1.RuntimeService/Version",
                extra: tuple[tuple[str, str], ...] = (), **kw: Any) -> HeadersFrame:
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                   ("content-type", "application/grpc"), ("te", "trailers"), *extra]
        return HeadersFrame(stream_id, data=self.client_enc.encode(headers, **kw), flags=["END_HEADERS"])

    def answer(self, stream_id: int, status: int = 0, message: str = "",
               trailers_only: bool = False) -> list[HeadersFrame]:
        head = [(":status", "200"), ("content-type", "application/grpc")]
        tail = [("grpc-status", str(status)), ("grpc-message", message), ("x-t", "1")]
        if trailers_only:
            return [HeadersFrame(stream_id, data=self.server_enc.encode(head + tail),
                                 flags=["END_HEADERS", "END_STREAM"])]
        return [HeadersFrame(stream_id, data=self.server_enc.encode(head), flags=["END_HEADERS"]),
                HeadersFrame(stream_id, data=self.server_enc.encode(tail), flags=["END_HEADERS", "END_STREAM"])]

    def unary(self, stream_id: int, request: bytes = b"req", reply: bytes = b"rep") -> None:
        self.client(self.request(stream_id), DataFrame(stream_id, prefixed(request), flags=["END_STREAM"]))
        head, tail = self.answer(stream_id)
        self.server(head, DataFrame(stream_id, prefixed(reply)), tail)
