"""Server byte streams for the lean walk's tests (proxy/lean.py), and how they are cut.

`Streams` builds a connection's two byte streams call by call with hyperframe and hpack;
`kubelet_like` and `odd_frames` are the captures; `cases` cuts them the ways reads do (at
every byte, a byte at a time, at random) and `shipped` reduces what a walk ships for a cut
to one digest, so that the bytes the recorder gets can be compared exactly with those the
walk shipped before (tests/data/lean/shipped.json, recorded from main's walk).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

METHODS = ("Version", "ListContainers", "ListContainerStats", "ContainerStatus", "ListPodSandbox")
MAX_CUT = 1024  # proxy.lean.MAX_CUT, the bound `many_cut_streams` goes past


def prefixed(data: bytes, compressed: bool = False) -> bytes:
    return bytes([compressed]) + len(data).to_bytes(4, "big") + data


def raw(frame: Any) -> bytes:
    return bytes(frame.serialize())


class Streams:
    """A connection's two byte streams, made with hyperframe and hpack, call by call."""

    def __init__(self) -> None:
        self.client: list[bytes] = []
        self.server: list[bytes] = []
        self.client_enc, self.server_enc = Encoder(), Encoder()
        self.next_id = 1

    def c(self, *frames: Any) -> None:
        self.client.extend(raw(f) for f in frames)

    def s(self, *frames: Any) -> None:
        self.server.extend(raw(f) for f in frames)

    def call(self, request: bytes, response: bytes, *, request_cuts: int = 1, response_cuts: int = 1,
             status: int = 0, pad: int = 0, reset: bool = False) -> None:
        """One call whose message bytes go in `*_cuts` DATA frames cut anywhere (prefixes too)."""
        sid, self.next_id = self.next_id, self.next_id + 2
        path = f"/runtime.v1.RuntimeService/{METHODS[sid % len(METHODS)]}"
        self.c(HeadersFrame(sid, data=self.client_enc.encode([(":method", "POST"), (":path", path),
                                                                ("content-type", "application/grpc")]),
                            flags=["END_HEADERS"]))
        self.c(*self.data(sid, request, request_cuts, pad, end=True))
        head = HeadersFrame(sid, data=self.server_enc.encode([(":status", "200")]), flags=["END_HEADERS"])
        self.s(head, *self.data(sid, response, response_cuts, pad, end=False))
        if reset:
            self.s(RstStreamFrame(sid, error_code=8))
            return
        self.s(HeadersFrame(sid, data=self.server_enc.encode([("grpc-status", str(status))]),
                            flags=["END_HEADERS", "END_STREAM"]))

    @staticmethod
    def data(sid: int, stream: bytes, cuts: int, pad: int, end: bool) -> Iterator[DataFrame]:
        rng = random.Random(sid)
        points = sorted({0, len(stream), *(rng.randrange(len(stream) + 1) for _ in range(cuts - 1))})
        for i, (a, b) in enumerate(zip(points, points[1:])):
            last = i == len(points) - 2
            flags = (["END_STREAM"] if end and last else []) + (["PADDED"] if pad else [])
            yield DataFrame(sid, stream[a:b], flags=flags, pad_length=pad)


def kubelet_like() -> Streams:
    """Unary calls small and large, streams of messages cut at odd places, padding, empty
    messages, an error, a reset mid-reply, and control frames between them."""
    rng = random.Random(7)
    s = Streams()
    s.c(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20}))
    s.s(SettingsFrame(0), SettingsFrame(0, flags=["ACK"]))
    s.call(prefixed(b"v"), prefixed(b"containerd 1.7"))
    s.call(prefixed(b""), prefixed(rng.randbytes(300_000)), response_cuts=20)
    s.call(prefixed(b"ab") + prefixed(b"") + prefixed(b"cde"), b"".join(prefixed(rng.randbytes(n))
                                                                      for n in (0, 1, 40_000, 3, 17_000)),
           request_cuts=9, response_cuts=13)
    s.s(PingFrame(0, opaque_data=b"12345678"), WindowUpdateFrame(0, window_increment=1000))
    s.call(prefixed(b"x" * 70), prefixed(rng.randbytes(20_000)), response_cuts=4, pad=9)
    s.call(prefixed(b"nope"), b"", status=5)
    s.call(prefixed(b"r"), prefixed(rng.randbytes(50_000))[:31_000], response_cuts=3, reset=True)
    s.call(prefixed(b"z"), prefixed(b"q" * 16_000), response_cuts=1)
    s.c(DataFrame(99, b"\x00\x00", flags=["PADDED"], pad_length=0))  # not a call: ignored either way
    return s


def odd_frames() -> bytes:
    """A few kilobytes of server frames in every shape the lean walk tells apart: small whole
    messages (passed as they are) and one of the summary's own length, a large one, several in
    a frame, padding (and malformed padding), a prefix cut by a frame boundary, empty and
    4-byte frames, a header block with CONTINUATION interrupted by DATA, resets mid-message,
    DATA that ends its stream, and control frames."""
    enc = Encoder()
    status = enc.encode([(":status", "200"), ("content-type", "application/grpc")])
    trailers = enc.encode([("grpc-status", "0")])
    two = prefixed(b"m" * 30) + prefixed(b"n" * 2000)
    frames = [
        SettingsFrame(0), SettingsFrame(0, flags=["ACK"]), WindowUpdateFrame(0, window_increment=65535),
        HeadersFrame(1, data=status, flags=["END_HEADERS"]), DataFrame(1, prefixed(b"1.7.24")),
        HeadersFrame(1, data=trailers, flags=["END_HEADERS", "END_STREAM"]),
        HeadersFrame(3, data=status, flags=["END_HEADERS"]), DataFrame(3, prefixed(b"s" * 8)),  # summary-sized
        DataFrame(3, prefixed(b"L" * 1500)), DataFrame(3, prefixed(b"a") + prefixed(b"") + prefixed(b"bc")),
        DataFrame(3, two[:3]), DataFrame(3, two[3:40]), DataFrame(3, two[40:900]), DataFrame(3, two[900:]),
        PingFrame(0, opaque_data=b"abcdefgh"), DataFrame(3, b""), DataFrame(3, prefixed(b"xyz")[:4]),
        DataFrame(3, prefixed(b"xyz")[4:], flags=["PADDED"], pad_length=20),
        DataFrame(3, prefixed(b"p" * 300), flags=["PADDED"], pad_length=0),
        HeadersFrame(5, data=status, flags=["END_HEADERS"]), DataFrame(5, prefixed(b"q" * 400)[:200]),
        HeadersFrame(7, data=status[:2]), DataFrame(5, prefixed(b"q" * 400)[200:300]),
        ContinuationFrame(7, data=status[2:], flags=["END_HEADERS"]), RstStreamFrame(5, error_code=8),
        DataFrame(7, prefixed(b"e" * 50), flags=["END_STREAM"]),
        HeadersFrame(3, data=trailers, flags=["END_HEADERS", "END_STREAM"]),
        HeadersFrame(9, data=status, flags=["END_HEADERS"]), DataFrame(9, prefixed(b"w" * 100)[:60]),
        DataFrame(9, prefixed(b"w" * 100)[60:], flags=["END_STREAM"]),
        GoAwayFrame(0, last_stream_id=9, error_code=0, additional_data=b"bye"),
    ]
    bad = bytes([0, 0, 3, 0, 0x8, 0, 0, 0, 11, 200, 1, 2])  # DATA, PADDED, pad length 200 of a 3-byte payload
    return b"".join(raw(f) for f in frames) + bad


def many_cut_streams() -> bytes:
    """More streams left inside a message than the walk keeps (MAX_CUT), some ended later."""
    out = [raw(DataFrame(sid, prefixed(b"x" * 100)[:50])) for sid in range(1, 2 * MAX_CUT + 200, 2)]
    out += [raw(RstStreamFrame(201, error_code=8)), raw(DataFrame(203, b"x" * 55, flags=["END_STREAM"])),
            raw(DataFrame(2 * MAX_CUT + 197, b"x" * 55, flags=["END_STREAM"])),
            raw(HeadersFrame(2 * MAX_CUT + 195, data=b"\x88", flags=["END_HEADERS", "END_STREAM"]))]
    return b"".join(out)


def random_cuts(stream: bytes, rng: random.Random) -> list[bytes]:
    """The bytes as reads would cut them: anywhere, frame headers included."""
    out, pos = [], 0
    while pos < len(stream):
        size = rng.choice((1, 3, 9, 10, 100, 4096, 65536))
        out.append(stream[pos:pos + size])
        pos += size
    return out


def cases() -> Iterator[tuple[str, list[list[bytes]]]]:
    """Named sets of chunkings, each a list of chunks that together make one capture."""
    odd = odd_frames()
    yield "odd, whole", [[odd]]
    yield "odd, cut at every byte", [[odd[:i], odd[i:]] for i in range(1, len(odd))]
    yield "odd, a byte at a time", [[odd[i:i + 1] for i in range(len(odd))]]
    yield "odd, at random", [random_cuts(odd, random.Random(seed)) for seed in range(40)]
    kubelet = b"".join(kubelet_like().server)
    yield "kubelet-like, whole", [[kubelet]]
    yield "kubelet-like, at random", [random_cuts(kubelet, random.Random(seed)) for seed in range(6)]
    many = many_cut_streams()
    yield "more cut streams than MAX_CUT", [[many], random_cuts(many, random.Random(1))]


Walk = Callable[[bytes], tuple[bytes, bool]]  # a chunk -> what is shipped of it, and its boundary flag


def shipped(walks: Iterator[tuple[Walk, list[bytes]]]) -> str:
    """One digest of everything the walks ship, chunk by chunk: each output's length, boundary
    flag and bytes (an output of b"" is shipped as nothing, so it counts as nothing)."""
    digest = hashlib.sha256()
    for walk, chunks in walks:
        digest.update(b"|start|")
        for chunk in chunks:
            out, boundary = walk(chunk)
            if out:
                digest.update(b"%d:%d:" % (len(out), boundary))
                digest.update(out)
    return digest.hexdigest()
