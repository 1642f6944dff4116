"""The frame walker against a reference splitter, over random frames cut into random chunks.

`feed` must return exactly the frames a whole-buffer split finds, and `track` must end with
the same open calls and header-block state as applying the rules frame by frame, however
the bytes are chunked (a header split across chunks, a payload spanning many).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cri_proxy.h2 import frames as h2

pytestmark = pytest.mark.timeout(120)

KINDS = [h2.DATA, h2.HEADERS, h2.RST_STREAM, h2.SETTINGS, h2.PING, h2.WINDOW_UPDATE, h2.CONTINUATION, 0x20]
_frame = st.tuples(st.sampled_from(KINDS), st.integers(0, 255), st.integers(0, 5) | st.just(0x7FFFFFFF),
                   st.binary(max_size=40) | st.binary(min_size=300, max_size=1200))


def _raw(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _reference_split(data: bytes) -> list[tuple[int, int, int, bytes]]:
    frames, pos = [], 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        frames.append((data[pos + 3], data[pos + 4], int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF,
                       data[pos:pos + 9 + length]))
        pos += 9 + length
    return frames


def _reference_track(frames: list[tuple[int, int, int, bytes]], from_client: bool) -> tuple[set[int], bool]:
    streams: set[int] = set()
    in_block = False
    for kind, flags, stream, _ in frames:
        if kind == h2.RST_STREAM:
            streams.discard(stream)
        elif from_client:
            if kind == h2.HEADERS:
                streams.add(stream)
        elif kind in (h2.HEADERS, h2.CONTINUATION):
            in_block = not flags & h2.FLAG_END_HEADERS
            if kind == h2.HEADERS and flags & h2.FLAG_END_STREAM:
                streams.discard(stream)
        elif kind == h2.DATA and flags & h2.FLAG_END_STREAM:
            streams.discard(stream)
    return streams, in_block


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frame, max_size=30), cuts=st.lists(st.integers(0, 1 << 20), max_size=40))
def test_feed_finds_the_reference_frames_at_any_chunking(frames: list[tuple[int, int, int, bytes]],
                                                          cuts: list[int]) -> None:
    data = b"".join(_raw(*f) for f in frames)
    walker = h2.FrameWalker(frozenset({h2.HEADERS, h2.CONTINUATION, h2.SETTINGS}), raw=True)
    found = [f for chunk in _chunks(data, cuts) for f in walker.feed(chunk)]
    expected = _reference_split(data)
    assert [(f.type, f.flags, f.stream_id, f.raw) for f in found] == expected
    kept = {h2.HEADERS, h2.CONTINUATION, h2.SETTINGS}
    assert [f.payload for f in found] == [raw[9:] if kind in kept else None for kind, _, _, raw in expected]
    assert walker.at_boundary


@settings(max_examples=400, deadline=None)
@given(frames=st.lists(_frame, max_size=30), cuts=st.lists(st.integers(0, 1 << 20), max_size=40),
       from_client=st.booleans(), partial=st.integers(0, 8))
def test_track_follows_the_calls_at_any_chunking(frames: list[tuple[int, int, int, bytes]], cuts: list[int],
                                                 from_client: bool, partial: int) -> None:
    data = b"".join(_raw(*f) for f in frames)
    walker, streams = h2.FrameWalker(), set[int]()
    for chunk in _chunks(data, cuts):
        walker.track(chunk, streams, from_client)
    expected_streams, expected_block = _reference_track(_reference_split(data), from_client)
    assert streams == expected_streams
    assert walker.at_boundary
    if not from_client:
        assert walker.in_block == expected_block
    if partial:  # part of one more frame: not counted until it is whole
        extra = _raw(h2.RST_STREAM, 0, 1, b"\x00\x00\x00\x08")
        before = set(streams)
        walker.track(extra[:partial], streams, from_client)
        assert streams == before and not walker.at_boundary
