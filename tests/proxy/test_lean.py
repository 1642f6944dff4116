"""The lean form (cri_proxy/proxy/lean.py): the same byte streams, fed to the recorder's tap
whole and with the server's through the relay's lean walker, give the same calls and the same
metrics, however the reads cut them; and the lean form is a small fraction of the bytes when
replies are large."""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
)
from prometheus_client import generate_latest

from cri_proxy.h2.walker import FrameWalker
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.link import LEAN_SUMMARY, lean_data, read_lean_data
from cri_proxy.model.sink import MemorySink
from cri_proxy.proxy.lean import MAX_CUT, PASS_WHOLE, LeanWalker
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.metrics import CallMetrics
from cri_proxy.recorder.tap import RecordingTap
from tests.helpers import lean_captures
from tests.helpers.lean_captures import Streams, kubelet_like, prefixed, random_cuts

CUT_NOTE = "message cut short"  # the only note the lean form cannot make: it never holds the bytes
# What main's walk shipped of each of lean_captures.cases() (recorded before the walk became the
# relay's too): the recorder's reading of the lean form is built on exactly these bytes.
SHIPPED = pathlib.Path(__file__).parents[1] / "data" / "lean" / "shipped.json"


def chunks(frames: list[bytes], rng: random.Random) -> list[bytes]:
    return random_cuts(b"".join(frames), rng)


def replay(s: Streams, lean: bool, rng: random.Random) -> tuple[list[RecordedCall], int]:
    """The calls the tap makes of both streams, and the server bytes it was fed; the time is the
    number of the read, so durations say in which read a call's frames completed."""
    sink = MemorySink()
    now = [0.0]
    conn = RecordingTap(sink, clock=lambda: 0.0, timer=lambda: now[0], lean=lean).open(
        ConnectionInfo(1, 10, 0, "unix:///rt.sock"))
    walker = LeanWalker()
    fed = 0
    for chunk in chunks(s.client, rng):
        now[0] += 1
        conn.client_bytes(chunk, True)
    for chunk in chunks(s.server, rng):
        now[0] += 1
        out = walker.feed(chunk) if lean else chunk
        fed += len(out)
        if out:
            conn.server_bytes(out, walker.at_boundary)
    conn.closed(None)
    return sink.calls, fed


def seen(call: RecordedCall) -> tuple[Any, ...]:
    notes = [n for n in call.notes if CUT_NOTE not in n]
    return (call.stream_id, call.path, call.outcome, call.status_code, call.request_bytes, call.response_bytes,
            call.duration_s, notes)


def metrics(calls: list[RecordedCall]) -> list[str]:
    """The exposition, but for the series' creation times."""
    peer = CallMetrics(process=False, clock=lambda: 0.0)
    for call in calls:
        peer.observe(call)
    return [line for line in generate_latest(peer.registry).decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize("seed", range(6))
def test_the_lean_form_gives_the_same_calls_and_metrics(seed: int) -> None:
    s = kubelet_like()
    full, full_bytes = replay(s, False, random.Random(seed))
    lean, lean_bytes = replay(s, True, random.Random(seed))
    assert len(full) == 7
    assert [seen(c) for c in lean] == [seen(c) for c in full]
    assert metrics(lean) == metrics(full)
    assert any(c.response_bytes >= 300_000 for c in full) and [c.outcome.value for c in full].count("cancelled") == 1
    assert lean_bytes < full_bytes / 50  # 420 KB of replies: a few hundred bytes of summaries
    assert all(m.direction.value == "request" for c in lean for m in c.messages)  # replies counted, not held


def test_the_middle_of_a_reply_costs_nothing_but_a_frame_inside_a_header_block_is_kept() -> None:
    """A frame that completes no message and ends nothing is left out, except inside a header
    block, where the recorder must see it to know the block was interrupted (and its HPACK lost)."""
    s = Streams()
    s.call(prefixed(b"a"), prefixed(b"m" * 90_000), response_cuts=12)
    for sid in (3, 5):
        s.c(HeadersFrame(sid, data=s.client_enc.encode([(":method", "POST"),
                                                        (":path", "/runtime.v1.RuntimeService/Version")]),
                         flags=["END_HEADERS"]), DataFrame(sid, prefixed(b"v"), flags=["END_STREAM"]))
    block = s.server_enc.encode([(":status", "200"), ("content-type", "application/grpc")])
    s.s(HeadersFrame(3, data=s.server_enc.encode([(":status", "200")]), flags=["END_HEADERS"]),
        DataFrame(3, prefixed(b"q" * 40)[:20]),
        HeadersFrame(5, data=block[:3]),
        DataFrame(3, prefixed(b"q" * 40)[20:30]),  # completes nothing, but interrupts the block
        ContinuationFrame(5, data=block[3:], flags=["END_HEADERS"]))
    full, full_bytes = replay(s, False, random.Random(1))
    lean, lean_bytes = replay(s, True, random.Random(1))
    assert [seen(c) for c in lean] == [seen(c) for c in full]
    assert [c.outcome.value for c in full] == ["completed", "unparsed", "unparsed"]
    walker = LeanWalker()
    frames = [bytes(f.serialize()) for f in (DataFrame(1, prefixed(b"z" * 50)[:20]), DataFrame(1, b"z" * 10),
                                             HeadersFrame(3, data=b"\x82"), DataFrame(1, b"z" * 10))]
    assert [walker.feed(f) for f in frames] == [b"", b"", frames[2], lean_data(0, 1, False, 0, 0)]


def test_a_walker_passes_everything_but_data_as_it_is() -> None:
    enc = Encoder()
    headers = bytes(HeadersFrame(1, data=enc.encode([(":path", "/a")]), flags=["END_HEADERS"]).serialize())
    ping = bytes(PingFrame(0, opaque_data=b"abcdefgh").serialize())
    walker = LeanWalker()
    assert walker.feed(headers + ping) == headers + ping
    out = walker.feed(bytes(DataFrame(1, prefixed(b"h" * PASS_WHOLE), flags=["END_STREAM"]).serialize()))
    assert out == lean_data(1, 1, False, 1, PASS_WHOLE)
    assert read_lean_data(out[9:]) == (False, 1, PASS_WHOLE)
    # A frame header cut by a read waits for the rest; a frame's payload goes as it comes.
    assert walker.feed(ping[:5]) == b"" and walker.at_boundary
    assert walker.feed(ping[5:10]) == ping[:10] and walker.at_boundary
    assert walker.feed(ping[10:]) == ping[10:] and not walker.at_boundary


def test_a_small_whole_message_passes_as_it_is_and_counts_the_same() -> None:
    """A DATA frame of one whole message up to PASS_WHOLE bytes is left in the chunk (a chunk
    of small replies goes untouched), except one of the summary's own length, which the
    recorder would take for a summary; the recorder counts both as the full bytes would."""
    sizes = (0, LEAN_SUMMARY.size - 5, PASS_WHOLE - 5, PASS_WHOLE - 4, 3)
    s = Streams()
    for size in sizes:
        s.call(prefixed(b"r"), prefixed(b"m" * size))
    small = bytes(DataFrame(1, prefixed(b"hello")).serialize())
    ping = bytes(PingFrame(0, opaque_data=b"abcdefgh").serialize())
    chunk = small + ping + bytes(DataFrame(3, prefixed(b"m" * (PASS_WHOLE - 5))).serialize())
    assert LeanWalker().feed(chunk) is chunk
    assert LeanWalker().feed(bytes(DataFrame(1, prefixed(b"12345678")).serialize())) == lean_data(0, 1, False, 1, 8)
    for seed in range(3):
        full, full_bytes = replay(s, False, random.Random(seed))
        lean, lean_bytes = replay(s, True, random.Random(seed))
        assert [c.response_bytes for c in full] == list(sizes)
        assert [seen(c) for c in lean] == [seen(c) for c in full]
        assert metrics(lean) == metrics(full)
        assert lean_bytes < full_bytes


def test_streams_left_inside_a_message_are_bounded() -> None:
    """A reply cut off by the client's reset (which the server's walker never sees) leaves its
    stream's state; the oldest goes once MAX_CUT are kept, and a reset or an end drops one."""
    server = LeanWalker()
    for sid in range(1, 2 * MAX_CUT + 200, 2):
        assert server.feed(bytes(DataFrame(sid, prefixed(b"x" * 100)[:50]).serialize())) == b""  # completes nothing
    assert len(server.streams) == MAX_CUT and min(server.streams) == 201
    server.feed(bytes(RstStreamFrame(201, error_code=8).serialize()))
    server.feed(bytes(DataFrame(203, b"x" * 55, flags=["END_STREAM"]).serialize()))
    assert len(server.streams) == MAX_CUT - 2 and min(server.streams) == 205


def test_malformed_padding_is_said_so() -> None:
    walker = LeanWalker()
    bad = bytes([0, 0, 3, 0, 0x8, 0, 0, 0, 1, 200, 1, 2])  # DATA, PADDED, pad length 200 of a 3-byte payload
    assert read_lean_data(walker.feed(bad)[9:]) == (True, 0, 0)
    with pytest.raises(ValueError, match="lean DATA frame of 2 bytes"):
        read_lean_data(b"\x00\x01")


def test_a_data_frame_too_short_to_hold_a_prefix_at_a_reads_end_is_walked_not_passed() -> None:
    """The walker reads a DATA frame's message length in its header's unpack when the chunk
    holds those bytes; a 4-byte frame closing a read holds no length of its own (the bytes
    after it are another read's), and must be walked as the start of a cut message."""
    message = prefixed(b"abcdefgh")
    head = bytes(DataFrame(1, message[:4]).serialize())
    assert len(head) == 13
    walker = LeanWalker()
    assert walker.feed(head) == b""  # completes nothing yet
    assert walker.feed(bytes(DataFrame(1, message[4:], flags=["END_STREAM"]).serialize())) == \
        lean_data(1, 1, False, 1, 8)
    whole = bytes(DataFrame(3, prefixed(b"")).serialize())  # an empty message: 14 bytes, passed as it is
    assert walker.feed(whole) is whole


def test_the_lean_tap_counts_the_clients_messages_without_keeping_them() -> None:
    """Metrics only: the client's messages are counted as the full tap counts them (seen()
    compares their bytes), none read whole from its frame is kept, and no response metadata."""
    s = kubelet_like()
    full, _ = replay(s, False, random.Random(3))
    lean, _ = replay(s, True, random.Random(3))
    assert [seen(c) for c in lean] == [seen(c) for c in full]
    assert all(c.response_metadata == [] and c.trailers == [] for c in lean)
    s = Streams()
    for size in (0, 5, 300):
        s.call(prefixed(b"q" * size), prefixed(b"r"))
    calls = []
    for lean_ in (False, True):
        sink = MemorySink()
        conn = RecordingTap(sink, lean=lean_).open(ConnectionInfo(1, 10, 0, "unix:///rt.sock"))
        conn.client_bytes(b"".join(s.client), True)
        conn.server_bytes(LeanWalker().feed(b"".join(s.server)) if lean_ else b"".join(s.server), True)
        calls.append(sink.calls)
    full, lean = calls
    assert [c.request_bytes for c in lean] == [c.request_bytes for c in full] == [0, 5, 300]
    assert [len(c.messages) for c in full] == [2, 2, 2] and [c.messages for c in lean] == [[], [], []]


def _walks(chunkings: list[list[bytes]], relay: bool) -> Any:
    """Each chunking through a fresh walker: as the tap feeds it, or as the relay's own walk."""
    for chunks_ in chunkings:
        walker, track, open_streams = LeanWalker(), FrameWalker(), set(range(1, 4 * MAX_CUT, 2))

        def walk(chunk: bytes, walker: LeanWalker = walker, track: FrameWalker = track,
                 open_streams: set[int] = open_streams) -> tuple[bytes, bool]:
            out = walker.feed(chunk, track, open_streams) if relay else walker.feed(chunk)
            return out, walker.at_boundary
        yield walk, chunks_


@pytest.mark.parametrize("relay", [False, True], ids=["the tap's walk", "the relay's walk"])
def test_the_recorder_gets_exactly_the_bytes_main_shipped(relay: bool) -> None:
    """Cut at every byte, a byte at a time and at random; padded DATA, prefixes and messages
    cut by frame boundaries, CONTINUATION, RST_STREAM, more cut streams than MAX_CUT: the
    lean form, chunk by chunk, is what the walk shipped before it became the relay's walk too."""
    expected = json.loads(SHIPPED.read_text())
    got = {name: lean_captures.shipped(_walks(chunkings, relay)) for name, chunkings in lean_captures.cases()}
    assert got == expected


def test_the_lean_walk_follows_the_calls_as_the_relays_track_does() -> None:
    """Fed as the relay's walk, after every chunk: the same open calls, frame boundary, bytes
    walked, SETTINGS and PING bytes as `FrameWalker.track` over the same chunks, and the same
    header-block state wherever the relay may inject a frame (at a boundary)."""
    compared = 0
    for name, chunkings in lean_captures.cases():
        calls = {frame.stream_id for frame in FrameWalker().feed(b"".join(chunkings[0]))} - {0}
        for chunks_ in chunkings:
            walker, mine, ref = LeanWalker(), FrameWalker(), FrameWalker()
            ours, theirs = set(calls), set(calls)  # every stream open to begin with: which do they end?
            for i, chunk in enumerate(chunks_):
                walker.feed(chunk, mine, ours)
                ref.track(chunk, theirs, False)
                where = f"{name}, chunk {i} of {len(chunks_)}"
                assert (ours, mine.at_boundary, mine.walked, mine.control) == \
                    (theirs, ref.at_boundary, ref.walked, ref.control), where
                if ref.at_boundary:
                    assert mine.in_block == ref.in_block, where
                compared += 1
            assert ours != calls  # some of the captures' calls ended
    assert compared > 10_000


def test_a_call_ends_for_the_relay_once_its_trailers_are_whole() -> None:
    """A stream stays open while the frame that ends it is cut by a read (the connection must
    not be judged idle, and drained, with its trailers still on their way)."""
    trailers = bytes(HeadersFrame(1, data=b"\x88" * 5, flags=["END_HEADERS", "END_STREAM"]).serialize())
    reset = bytes(RstStreamFrame(3, error_code=8).serialize())
    walker, track, open_streams = LeanWalker(), FrameWalker(), {1, 3}
    assert walker.feed(trailers[:10], track, open_streams) == trailers[:10]
    assert open_streams == {1, 3} and not track.at_boundary
    walker.feed(trailers[10:] + reset[:11], track, open_streams)
    assert open_streams == {3} and not track.at_boundary
    walker.feed(reset[11:], track, open_streams)
    assert open_streams == set() and track.at_boundary and track.walked == len(trailers + reset)
