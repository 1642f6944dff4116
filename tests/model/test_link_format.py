"""cri_proxy/model/link_format.py: the link's framing; a Reader cuts the same messages out of a
stream wherever its pieces end, and a CHUNK's bytes come through untouched."""

from __future__ import annotations

import pytest

from cri_proxy.model import link_format as link
from tests.helpers.link import feed_in_pieces

pytestmark = pytest.mark.timeout(10)


def read_all(data: bytes, sizes: tuple[int, ...] = ()) -> list[tuple[int, bytes]]:
    """Feed `data` to a Reader (in pieces of `sizes`, then the rest); (kind, raw body) of each message."""
    got: list[tuple[int, bytes]] = []

    def take(kind: int, view: memoryview, start: int, stop: int) -> None:
        got.append((kind, bytes(view[start:stop])))

    feed_in_pieces(data, sizes, take)
    return got


def test_stop_is_an_empty_body() -> None:
    assert read_all(link.message(link.STOP)) == [(link.STOP, b"")]


def test_chunks_carry_their_bytes_untouched_between_other_kinds() -> None:
    data = bytes(range(256)) * 40
    stream = (link.message(link.OPEN, b"\x01\x00\x00\x00u") + link.chunk_head(1, True, 10.0, 20.0, len(data)) + data
              + link.message(link.GAP, b"\x01\x00\x00\x00"))
    for sizes in ((), (1,) * 7, (3, 5000, 2), (len(stream) - 1,)):  # cut anywhere, the messages are the same
        got = read_all(stream, sizes)
        assert [kind for kind, _ in got] == [link.OPEN, link.CHUNK, link.GAP]
        body = got[1][1]
        head = link.CHUNK_HEAD.unpack(link.LENGTH.pack(len(body) + 1) + bytes((link.CHUNK,)) +
                                      body[:link.CHUNK_HEAD.size - link.HEAD])
        assert head[2:] == (1, True, 10.0, 20.0)
        assert body[link.CHUNK_HEAD.size - link.HEAD:] == data


def test_a_lean_data_frame_reads_back_and_a_wrong_length_is_a_value_error() -> None:
    frame = link.lean_data(1, 7, False, 3, 300)
    assert len(frame) == 9 + link.LEAN_SUMMARY.size and frame[3] == 0 and frame[4] == 1  # a DATA frame header
    assert link.read_lean_data(frame[9:]) == (False, 3, 300)
    with pytest.raises(ValueError):
        link.read_lean_data(frame[9:-1])
