"""The tap's per-direction state stays bounded whatever a peer sends: header blocks
(CONTINUATION floods) and unacknowledged SETTINGS (issues 11.2, 11.3). Fed to a
ConnectionRecorder directly, as the recorder process feeds it the relayed bytes."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hpack import Encoder

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Outcome
from cri_proxy.model.sink import MemorySink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.h2.table_size import MAX_PENDING_RUNS
from cri_proxy.recorder.sides import MAX_HEADER_BLOCK, MAX_SPLITS, Side
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap, fast_decoder

pytestmark = pytest.mark.timeout(60)
VERSION = "/runtime.v1.RuntimeService/Version"


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def connection() -> tuple[ConnectionRecorder, MemorySink]:
    sink = MemorySink()
    return RecordingTap(sink).open(ConnectionInfo(3, 1, 0, "unix:///up.sock")), sink


def request_block(encoder: Encoder, path: str = VERSION, *extra: tuple[str, str]) -> bytes:
    return encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path), *extra])


def answer(tap: ConnectionRecorder, encoder: Encoder, stream_id: int) -> None:
    tap.server_bytes(frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, stream_id,
                           encoder.encode([(":status", "200"), ("grpc-status", "0")])))


def test_a_continuation_flood_is_dropped_as_it_comes() -> None:
    tap, sink = connection()
    client, server = Encoder(), Encoder()
    tap.client_bytes(frame(h2.HEADERS, 0, 1, request_block(client)))  # no END_HEADERS: CONTINUATION due
    chunk = frame(h2.CONTINUATION, 0, 1, b"\x00" * 16384) * 16  # 256 KiB, as the recorder reads
    flood = 3 * MAX_HEADER_BLOCK
    tracemalloc.start()
    try:
        for _ in range(flood // len(chunk)):
            tap.client_bytes(chunk)
        tap.client_bytes(frame(h2.CONTINUATION, h2.FLAG_END_HEADERS, 1, b"\x00"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_HEADER_BLOCK + (4 << 20), peak  # the cap and a chunk or two, not the flood
    assert len(tap.client.block) == 0 and not tap.client.in_block  # freed
    tap.client_bytes(frame(h2.DATA, h2.FLAG_END_STREAM, 1, b"\x00\x00\x00\x00\x00"))
    answer(tap, server, 1)
    tap.client_bytes(frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, 3, request_block(client)))
    answer(tap, server, 3)
    flooded, later = sink.calls
    assert (flooded.stream_id, flooded.outcome, flooded.path) == (1, Outcome.UNPARSED, "")
    assert any(f"over {MAX_HEADER_BLOCK} bytes (a CONTINUATION flood?)" in n for n in flooded.notes)
    assert (later.stream_id, later.outcome) == (3, Outcome.UNPARSED)  # the HPACK state went with the block


def test_many_small_continuation_frames_cost_their_bytes_only() -> None:
    """128k CONTINUATION frames of one byte each: a 128 KB header value, decoded at the end."""
    tap, sink = connection()
    client, server = Encoder(), Encoder()
    value = b"v" * (128 << 10)
    literal = b"\x00\x07x-flood\x7f" + _varint(len(value) - 127) + value  # literal, not indexed, raw
    block = request_block(client) + literal
    head, rest = block[:64], block[64:]
    tap.client_bytes(frame(h2.HEADERS, 0, 1, head))
    data = b"".join(frame(h2.CONTINUATION, 0, 1, rest[i:i + 1]) for i in range(len(rest) - 1))
    tracemalloc.start()
    try:
        for i in range(0, len(data), 64 << 10):
            tap.client_bytes(data[i:i + (64 << 10)])
        _, peak = tracemalloc.get_traced_memory()
        tap.client_bytes(frame(h2.CONTINUATION, h2.FLAG_END_HEADERS | 0, 1, rest[-1:]))
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak  # no frame object is kept per CONTINUATION
    tap.client_bytes(frame(h2.DATA, h2.FLAG_END_STREAM, 1, b"\x00\x00\x00\x00\x00"))
    answer(tap, server, 1)
    [call] = sink.calls
    assert (call.path, call.outcome, call.status_code) == (VERSION, Outcome.COMPLETED, 0)
    assert any(n.startswith("request metadata cut to its first 0 of 1 fields") for n in call.notes)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes((value,))


def _settings(size: int) -> bytes:
    return frame(h2.SETTINGS, 0, 0, h2.SETTINGS_HEADER_TABLE_SIZE.to_bytes(2, "big") + size.to_bytes(4, "big"))


def test_a_settings_flood_costs_constant_time_per_frame() -> None:
    tap, sink = connection()
    client, server = Encoder(), Encoder()
    count = 128 << 10
    sizes = [4096 + (i % 7) * 1024 for i in range(count)]  # the largest, 10240, many times
    flood = b"".join(_settings(s) for s in sizes)
    for i in range(0, len(flood), 256 << 10):
        tap.server_bytes(flood[i:i + (256 << 10)])
    assert len(tap.client.limit.pending) <= MAX_PENDING_RUNS
    assert tap.client.decoder.max_allowed_table_size == 10240  # anything in flight may be used
    client.header_table_size = 10240
    tap.client_bytes(frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, 1, request_block(client)))
    answer(tap, server, 1)
    acks = frame(h2.SETTINGS, h2.FLAG_ACK, 0) * count
    for i in range(0, len(acks), 256 << 10):
        tap.client_bytes(acks[i:i + (256 << 10)])
    assert not tap.client.limit.pending and tap.client.limit.acked == sizes[-1]
    assert tap.client.decoder.max_allowed_table_size == sizes[-1]
    client.header_table_size = sizes[-1]  # all acknowledged: the encoder is held to the last value
    tap.client_bytes(frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, 3, request_block(client)))
    answer(tap, server, 3)
    assert [(c.stream_id, c.outcome, c.path) for c in sink.calls] == [
        (1, Outcome.COMPLETED, VERSION), (3, Outcome.COMPLETED, VERSION)]


def test_settings_acknowledged_one_by_one_are_followed_exactly() -> None:
    tap, _ = connection()
    for size in (8192, 2048, None, 1024):
        payload = b"" if size is None else h2.SETTINGS_HEADER_TABLE_SIZE.to_bytes(2, "big") + size.to_bytes(4, "big")
        tap.server_bytes(frame(h2.SETTINGS, 0, 0, payload))
    side = tap.client
    allowed = []
    for _ in range(4):
        tap.client_bytes(frame(h2.SETTINGS, h2.FLAG_ACK, 0))
        allowed.append((side.limit.acked, side.decoder.max_allowed_table_size))
    assert allowed == [(8192, 8192), (2048, 2048), (2048, 2048), (1024, 1024)]


def test_a_repeated_header_list_is_split_once_and_an_equal_new_one_again() -> None:
    side = Side("server", fast_decoder())
    fields = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")]
    first = side.split(fields)
    assert first == ({":status": "200"}, fields[1:], len("content-type") + 16 + len("grpc-status") + 1)
    assert side.split(fields) is first  # the decoder's very list again: worked out once
    other = list(fields)
    assert side.split(other) == first and side.split(other) is not first
    for i in range(2 * MAX_SPLITS):  # a stream of distinct lists keeps the memo bounded
        side.split([("x-n", str(i))])
    assert side.split([("grpc-status", "13")]) == ({}, [("grpc-status", "13")], 13)


def test_calls_answered_alike_share_their_metadata_and_keep_their_own_status() -> None:
    tap, sink = connection()
    client, server = Encoder(), Encoder()
    for stream_id in (1, 3, 5):
        tap.client_bytes(frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_END_STREAM, stream_id,
                               request_block(client)))
        answer(tap, server, stream_id)
    assert [(c.stream_id, c.status_code, c.trailers) for c in sink.calls] == \
        [(s, 0, [("grpc-status", "0")]) for s in (1, 3, 5)]
