"""cri_proxy/h2/walker.py: the relay's fast header walk agrees with the full splitter on any chunking."""

from __future__ import annotations

import random

import pytest

from cri_proxy.h2 import frames as h2

WATCHED = {h2.HEADERS, h2.CONTINUATION, h2.RST_STREAM, h2.GOAWAY}


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


def random_stream(rng: random.Random, count: int) -> bytes:
    kinds = [h2.DATA, h2.HEADERS, h2.RST_STREAM, h2.SETTINGS, h2.PING, h2.GOAWAY, h2.WINDOW_UPDATE,
             h2.CONTINUATION]
    return b"".join(frame(rng.choice(kinds), rng.randrange(256), rng.randrange(1, 1 << 31),
                          bytes(rng.randrange(0, 40000) if rng.random() < 0.1 else rng.randrange(0, 40)))
                    for _ in range(count))


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 60))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def test_a_call_ends_only_once_its_closing_frame_is_complete() -> None:
    walker, streams = h2.FrameWalker(), {1}
    data = frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, 1, b"x" * 10)  # trailers
    walker.track(data[:4], streams, False)
    assert streams == {1} and not walker.at_boundary  # half a header
    walker.track(data[4:12], streams, False)
    assert streams == {1} and not walker.at_boundary  # header done, payload not
    walker.track(data[12:], streams, False)
    assert streams == set() and walker.at_boundary


@pytest.mark.parametrize("seed", range(20))
def test_the_splitter_gives_the_same_frames_on_any_chunking(seed: int) -> None:
    rng = random.Random(1000 + seed)
    data = random_stream(rng, 60)
    keep = frozenset({h2.HEADERS, h2.DATA, h2.SETTINGS})
    whole = [(f.type, f.flags, f.stream_id, f.payload, f.raw) for f in h2.FrameWalker(keep, raw=True).feed(data)]
    walker = h2.FrameWalker(keep, raw=True)
    pieces = [f for piece in chunks(data, rng) for f in walker.feed(piece)]
    assert [(f.type, f.flags, f.stream_id, f.payload, f.raw) for f in pieces] == whole
    assert b"".join(f.raw or b"" for f in pieces) == data and walker.at_boundary


@pytest.mark.parametrize("seed", range(10))
def test_the_frame_a_chunk_cut_is_handed_back_from_its_start(seed: int) -> None:
    # Routing takes whole frames (feed, raw) until it goes back to relaying chunks, whatever the
    # last chunk's cut: the frames it had, then what carried() hands back and the chunks after
    # it, are the stream, and what it hands back starts at a frame.
    rng = random.Random(3000 + seed)
    data = random_stream(rng, 40)
    parts = chunks(data, rng)
    cut = rng.randrange(1, len(parts) + 1)
    walker = h2.FrameWalker(raw=True)
    had = b"".join(f.raw or b"" for piece in parts[:cut] for f in walker.feed(piece))
    rest = walker.carried() + b"".join(parts[cut:])
    assert had + rest == data and walker.walked == len(had) and walker.at_boundary
    assert walker.carried() == b""
    assert b"".join(f.raw or b"" for f in h2.FrameWalker(raw=True).feed(rest)) == rest


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_a_large_frame_cut_across_chunks_comes_whole(kind: type) -> None:
    body = bytes(range(256)) * 4096  # a 1 MiB DATA frame, as a peer allowing large frames gets it
    data = frame(h2.DATA, h2.FLAG_END_STREAM, 3, body) + frame(h2.PING, 0, 0, b"12345678")
    cuts = [0, 4, 9, 10, 1 << 18, 1 << 19, len(data) - 12, len(data) - 3, len(data)]  # inside headers too
    for keep, raw in ((frozenset({h2.DATA}), False), (frozenset(), True), (frozenset(), False)):
        walker = h2.FrameWalker(keep, raw=raw)
        got = [f for a, b in zip(cuts, cuts[1:]) for f in walker.feed(kind(data[a:b]))]
        assert [(f.type, f.flags, f.stream_id, f.length) for f in got] == [
            (h2.DATA, h2.FLAG_END_STREAM, 3, len(body)), (h2.PING, 0, 0, 8)]
        assert got[0].payload == (body if keep else None) and got[0].raw == (data[:-17] if raw else None)
        assert all(type(f.payload) is bytes for f in got if f.payload is not None)
        assert walker.at_boundary and walker.control == 17


@pytest.mark.parametrize("seed", range(30))
def test_tracking_open_calls_agrees_with_the_frames(seed: int) -> None:
    rng = random.Random(2000 + seed)
    data = random_stream(rng, 80)
    for from_client in (True, False):
        expected: set[int] = set()
        in_block = False
        for f in h2.FrameWalker(frozenset(range(256))).feed(data):
            if f.type == h2.RST_STREAM:
                expected.discard(f.stream_id)
            elif from_client and f.type == h2.HEADERS:
                expected.add(f.stream_id)
            elif not from_client:
                if f.type in (h2.HEADERS, h2.CONTINUATION):
                    in_block = not f.flags & h2.FLAG_END_HEADERS
                if f.type in (h2.HEADERS, h2.DATA) and f.flags & h2.FLAG_END_STREAM:
                    expected.discard(f.stream_id)
        walker, streams = h2.FrameWalker(), {7, 9} if not from_client else set()
        if not from_client:
            expected = {7, 9} - {f.stream_id for f in h2.FrameWalker(frozenset(range(256))).feed(data)
                                 if f.type == h2.RST_STREAM or (f.type in (h2.HEADERS, h2.DATA)
                                                                and f.flags & h2.FLAG_END_STREAM)}
        for piece in chunks(data, rng):
            walker.track(piece, streams, from_client)
        assert streams == expected and walker.at_boundary
        if not from_client:
            assert walker.in_block == in_block
