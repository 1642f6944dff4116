"""cri_proxy/recorder/wire.py: gRPC messages cut from DATA frames, shared large bodies."""

from __future__ import annotations

import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Direction, RecordedCall
from cri_proxy.recorder.wire import SHARE_MIN_BYTES, LastBodies, MessageReader, data_content, error_name, share_bodies


def prefixed(body: bytes, compressed: bool = False) -> bytes:
    return bytes([int(compressed)]) + len(body).to_bytes(4, "big") + body


def new_call() -> RecordedCall:
    return RecordedCall(conn_id=1, stream_id=1, started_at=0.0, path="/runtime.v1.RuntimeService/Version")


@pytest.mark.parametrize("cut", [1, 3, 5, 6, 9, 12])
def test_messages_are_cut_right_at_any_frame_boundary(cut: int) -> None:
    data = prefixed(b"hello") + prefixed(b"", compressed=True) + prefixed(b"world!")
    call, reader = new_call(), MessageReader(Direction.RESPONSE)
    for part in (data[:cut], data[cut:]):
        reader.feed(part, call, 0.5)
    assert [(m.index, m.data, m.compressed) for m in call.messages] == [
        (0, b"hello", False), (1, b"", True), (2, b"world!", False)]
    assert call.response_bytes == 11 and reader.unfinished() is None


def test_a_large_message_over_many_frames_is_one_body_and_the_next_one_follows() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB, cut into 16 KiB frames as a runtime sends it
    data = prefixed(body) + prefixed(b"next")
    call, reader = new_call(), MessageReader(Direction.RESPONSE)
    frames = [data[i:i + 16384] for i in range(0, len(data), 16384)]
    for n, frame in enumerate(frames[:-1]):
        reader.feed(frame, call, 0.25)
        assert reader.unfinished() == f"response message cut short ({16384 * (n + 1) - 5} of {len(body)} bytes)"
    reader.feed(frames[-1], call, 0.5)
    assert [(m.index, m.data, m.offset_s) for m in call.messages] == [(0, body, 0.5), (1, b"next", 0.5)]
    assert type(call.messages[0].data) is bytes and reader.unfinished() is None


def test_share_bodies_gives_a_repeated_large_body_the_copy_seen_last() -> None:
    memo = LastBodies()
    large = b"x" * SHARE_MIN_BYTES
    calls = []
    for body in (large, large, b"y" * SHARE_MIN_BYTES, large, b"small", b"small"):
        call = new_call()
        reader = MessageReader(Direction.RESPONSE)
        reader.feed(prefixed(body), call, 0.0)  # one frame: a copy of its own each time
        share_bodies(memo, call, 0)
        calls.append(call.messages[0].data)
    assert calls[1] is calls[0] and calls[3] is not calls[0] and calls[3] == calls[0]
    assert calls[4] == calls[5] == b"small" and calls[4] is not calls[5]


def frames_of(data: bytes, size: int) -> list[memoryview]:
    return [memoryview(data)[i:i + size] for i in range(0, len(data), size)]


def test_a_body_equal_to_the_last_of_its_kind_is_that_body_without_being_assembled() -> None:
    memo = LastBodies()
    body = bytes(range(256)) * 1024
    kind = ("/runtime.v1.RuntimeService/Version", False)
    memo.put(kind, body)
    changed = bytearray(body)
    changed[200_000] ^= 1
    got = []
    for data in (bytes(body), bytes(changed), bytes(body[:-1])):  # equal; differs late; shorter
        call, reader = new_call(), MessageReader(Direction.RESPONSE, memo)
        for piece in frames_of(prefixed(data), 16384):
            reader.feed(piece, call, 0.0)  # views of the chunk, as the walker's pieces are
        [message] = call.messages
        assert message.data == data and type(message.data) is bytes and reader.unfinished() is None
        got.append(message.data)
    assert got[0] is body and got[1] is not body and got[2] is not body
    other = MessageReader(Direction.REQUEST, memo)  # the same method's requests are another kind
    call = new_call()
    for piece in frames_of(prefixed(body), 16384):
        other.feed(piece, call, 0.0)
    assert call.messages[0].data == body and call.messages[0].data is not body


def test_limits_of_the_last_bodies() -> None:
    memo = LastBodies(max_bytes=10_000, max_body_bytes=6_000)
    memo.put(("/a", False), b"a" * 5_000)
    memo.put(("/b", False), b"b" * 4_000)
    memo.put(("/c", False), b"c" * 7_000)  # over max_body_bytes: not kept
    assert memo.get(("/c", False)) is None and memo.bytes == 9_000
    memo.put(("/d", False), b"d" * 3_000)  # over max_bytes in all: the least recent kind goes
    assert memo.get(("/a", False)) is None and memo.get(("/b", False)) == b"b" * 4_000 and memo.bytes == 7_000
    memo.put(("/b", False), b"B" * 100)  # a new last body of a kind replaces the old one
    assert memo.get(("/b", False)) == b"B" * 100 and memo.bytes == 3_100


def test_what_is_cut_short_is_said() -> None:
    call, reader = new_call(), MessageReader(Direction.REQUEST)
    reader.feed(prefixed(b"abcdef")[:8], call, 0.0)
    assert reader.unfinished() == "request message cut short (3 of 6 bytes)"
    inside = MessageReader(Direction.REQUEST)
    inside.feed(b"\x00\x00", call, 0.0)
    assert inside.unfinished() == "request message cut short (inside its 5-byte prefix)"


def test_after_a_stop_nothing_more_is_read() -> None:
    call, reader = new_call(), MessageReader(Direction.REQUEST)
    reader.stop("a gap")
    reader.feed(prefixed(b"secret"), call, 0.0)
    assert call.messages == [] and reader.unfinished() == "request messages after a gap are not recorded"


def data_frame(payload: bytes, flags: int = 0) -> h2.Frame:
    return h2.Frame(h2.DATA, flags, 1, len(payload), payload)


def test_data_content_strips_padding_and_refuses_bad_padding() -> None:
    assert data_content(data_frame(b"\x02abc\x00\x00", h2.FLAG_PADDED)) == b"abc"
    assert data_content(data_frame(b"\x05ab", h2.FLAG_PADDED)) is None
    assert data_content(data_frame(b"plain")) == b"plain"


def test_error_name() -> None:
    assert error_name(8) == "CANCEL (8)" and error_name(0x99) == "unknown error (153)"
