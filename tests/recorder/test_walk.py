"""cri_proxy/recorder/walk.py: the tap's frame walk hands on the frames hyperframe finds in a
byte stream, an unpadded DATA frame in the pieces the chunks cut it into, wherever chunks end."""

from __future__ import annotations

import random
from itertools import accumulate, pairwise

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from cri_proxy.h2 import frames as h2
from cri_proxy.recorder.sides import Side
from cri_proxy.recorder.tap import fast_decoder
from cri_proxy.recorder.walk import READ_TYPES, TapWalker

pytestmark = pytest.mark.timeout(30)

Seen = tuple[str, int, int, int, bytes]  # (how it came, kind, flags, stream, payload or piece)


def stream() -> bytes:
    """Every kind of frame the tap meets, DATA large and small, padded or not, a header block
    in three frames, frames of the kinds the tap walks over, an unknown type."""
    frames = [
        HeadersFrame(1, data=b"\x82\x86", flags=["END_HEADERS"]),
        DataFrame(1, b"\x00\x00\x00\x00\x03abc", flags=["END_STREAM"]),
        WindowUpdateFrame(0, window_increment=100), PingFrame(0, opaque_data=b"12345678"),
        HeadersFrame(3, data=b"\x82", flags=["PADDED", "PRIORITY"], pad_length=3, depends_on=1, stream_weight=9),
        ContinuationFrame(3, data=b"\x86"), ContinuationFrame(3, data=b"\x84", flags=["END_HEADERS"]),
        DataFrame(3, bytes(range(256)) * 20),  # 5 KB, cut by most chunk ends
        DataFrame(3, b"", flags=["END_STREAM"]),
        DataFrame(5, b"pad me", flags=["PADDED", "END_STREAM"], pad_length=7),
        PriorityFrame(5, depends_on=3, stream_weight=1), SettingsFrame(0, settings={1: 8192}),
        SettingsFrame(0, flags=["ACK"]), RstStreamFrame(5, error_code=8),
        GoAwayFrame(0, last_stream_id=5, error_code=0, additional_data=b"bye"),
    ]
    unknown = h2.frame(0xEE, 0, 0, b"?" * 40)
    return b"".join(bytes(f.serialize()) for f in frames[:4]) + unknown + \
        b"".join(bytes(f.serialize()) for f in frames[4:])


def reference(chunks: list[bytes]) -> list[Seen]:
    """The frames of READ_TYPES as hyperframe parses the whole stream, each unpadded DATA frame
    cut where the chunks end (END_STREAM on its last piece only; an empty frame whole)."""
    data, ends, pos = b"".join(chunks), list(accumulate(len(c) for c in chunks)), 0
    seen: list[Seen] = []
    while pos < len(data):
        header, length = Frame.parse_frame_header(memoryview(data[pos:pos + 9]))
        begin, start, stop = pos, pos + 9, pos + 9 + length
        kind, flags = data[begin + 3], data[begin + 4]  # the flags byte as sent (hyperframe keeps known flags only)
        pos = stop
        if kind not in READ_TYPES:
            continue
        if kind != h2.DATA or flags & h2.FLAG_PADDED or not length:
            seen.append(("frame", kind, flags, header.stream_id, data[start:stop]))
            continue
        cuts = [start, *(end for end in ends if start < end < stop), stop]
        if start in ends and any(begin < end < start for end in ends):
            cuts.insert(0, start)  # a header cut, then completed right at a chunk's end: an empty first piece
        for a, b in pairwise(cuts):
            last = b == stop
            seen.append(("piece", kind, flags if last else flags & ~h2.FLAG_END_STREAM, header.stream_id, data[a:b]))
    return seen


def walked(chunks: list[bytes], in_block: bool = False) -> list[Seen]:
    side, other = Side("client", fast_decoder()), Side("server", fast_decoder())
    side.in_block = in_block  # a header block left open: every frame goes to dispatch
    seen: list[Seen] = []

    def dispatch(s: Side, o: Side, kind: int, flags: int, stream_id: int, data: bytes, start: int,
                 stop: int) -> None:
        assert s is side and o is other
        seen.append(("dispatch", kind, flags, stream_id, bytes(data[start:stop])))

    def on_data(s: Side, stream_id: int, flags: int, data: bytes, start: int, stop: int) -> None:
        seen.append(("data", h2.DATA, flags, stream_id, bytes(data[start:stop])))

    def on_block(s: Side, stream_id: int, flags: int, block: bytes) -> None:
        assert s is side
        seen.append(("block", h2.HEADERS, flags, stream_id, block))

    walker = TapWalker(side, other, dispatch, on_data, on_block, lambda s, kind, stream_id: None)
    for chunk in chunks:
        walker.feed(chunk)
    return seen


def plain(seen: list[Seen]) -> list[tuple[int, int, int, bytes]]:
    """The frames and pieces, whichever way each was handed on; a padded or priority HEADERS
    and a CONTINUATION go to dispatch, a whole unpadded block to on_block, DATA to on_data."""
    return [s[1:] for s in seen]


def test_every_split_in_two_hands_on_what_frame_walker_does() -> None:
    data = stream()
    whole = walked([data])
    assert plain(whole) == plain(reference([data]))
    assert [(how, kind) for how, kind, *_ in whole] == [
        ("block", h2.HEADERS), ("data", h2.DATA), ("dispatch", h2.HEADERS), ("dispatch", h2.CONTINUATION),
        ("dispatch", h2.CONTINUATION), ("data", h2.DATA), ("data", h2.DATA), ("dispatch", h2.DATA),
        ("dispatch", h2.SETTINGS), ("dispatch", h2.SETTINGS), ("dispatch", h2.RST_STREAM), ("dispatch", h2.GOAWAY)]
    for cut in range(1, len(data)):
        chunks = [data[:cut], data[cut:]]
        assert plain(walked(chunks)) == plain(reference(chunks)), cut


def test_chunks_of_one_byte_and_of_random_sizes() -> None:
    data = stream()
    chunks = [data[i:i + 1] for i in range(len(data))]
    assert plain(walked(chunks)) == plain(reference(chunks))
    rng = random.Random(5)
    for _ in range(50):
        chunks, pos = [], 0
        while pos < len(data):
            step = rng.choice([1, 2, 8, 9, 10, 17, 100, 3000, 9000])
            chunks.append(data[pos:pos + step])
            pos += step
        assert plain(walked(chunks)) == plain(reference(chunks))


def test_a_large_data_frame_comes_in_pieces_never_held() -> None:
    big = bytes(DataFrame(1, b"x" * 100_000, flags=["END_STREAM"]).serialize())
    chunks = [big[i:i + 16384] for i in range(0, len(big), 16384)]
    seen = walked(chunks)
    assert [len(s[4]) for s in seen] == [16384 - 9] + [16384] * 5 + [100_000 - (16384 - 9) - 5 * 16384]
    assert [s[2] & h2.FLAG_END_STREAM for s in seen] == [0] * 6 + [h2.FLAG_END_STREAM]


def test_with_a_header_block_open_every_frame_goes_to_dispatch() -> None:
    """The tap must see whatever interrupts a block, walked-over kinds included."""
    data = b"".join(bytes(f.serialize()) for f in (
        WindowUpdateFrame(0, window_increment=1), DataFrame(1, b"abc"), PingFrame(0, opaque_data=b"12345678")))
    for chunks in ([data], [data[:5], data[5:14], data[14:]]):
        assert [(how, kind) for how, kind, *_ in walked(chunks, in_block=True)] == [
            ("dispatch", h2.WINDOW_UPDATE), ("dispatch", h2.DATA), ("dispatch", h2.PING)]
