"""cri_proxy/proxy/recorder_behind.py: beyond the outbox's limit a direction is thinned (no DATA)
or its chunks dropped, and the link says where (GAP) when they resume."""

from __future__ import annotations

import asyncio
import socket

from cri_proxy.model import link
from cri_proxy.proxy.recorder_out import Outbox
from tests.helpers.linkread import received


def test_over_the_limit_chunks_wait_for_a_frame_boundary_and_a_gap_message() -> None:
    loop = asyncio.new_event_loop()
    died: list[str] = []
    box = Outbox(1000, lambda: loop, died.append)
    ours, theirs = socket.socketpair()
    try:
        box.chunk(1, True, b"a" * 600, True)
        box.chunk(1, True, b"b" * 600, False)  # over the limit now: nothing was sent yet
        box.chunk(1, True, b"c" * 100, False)
        assert box.gapped == {(1, True)} and box.gap_episodes == 1 and box.dropped == 100
        box.sock = ours
        box.flush()
        assert box.pending == 0 and len(box.unacked.chunks) == 2
        box.chunk(1, True, b"d" * 100, False)  # mid-frame: the child could not pick up here
        box.chunk(2, False, b"e" * 10, False)  # another connection is unaffected
        box.chunk(1, True, b"f" * 100, True)
        box.flush()
        kinds = [(kind, len(body)) for kind, body in received(theirs)]
        assert [k for k, _ in kinds] == [link.CHUNK, link.CHUNK, link.CHUNK, link.GAP, link.CHUNK]
        assert kinds[-1][1] == link.CHUNK_FIXED - 1 + 100
        assert box.gapped == set() and box.gap_since is None and not died
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_the_calls_begun_in_dropped_client_bytes_are_handed_over_with_the_gap() -> None:
    loop = asyncio.new_event_loop()
    box = Outbox(100, lambda: loop, lambda why: None)
    ours, theirs = socket.socketpair()
    headers = bytes((0, 0, 1, 1, 4, 0, 0, 0, 1)) + b"\x83"  # a 1-byte HEADERS frame
    data = bytes((0, 0, 2, 0, 1, 0, 0, 0, 1)) + b"\x00\x00"
    try:
        box.chunk(1, True, b"x" * 200, True)  # over the limit now
        box.chunk(1, True, headers + data + headers, True)  # dropped: two calls begin in it
        box.chunk(1, True, headers, True)  # and a third
        box.sock = ours
        box.flush()
        box.chunk(1, True, data, True)
        box.chunk(3, True, b"y" * 200, True)  # over again
        box.chunk(3, True, headers, True)
        box.sock = None
        box.forget(3)  # connection 3 closed before it could resume: its call is handed over now
        box.sock = ours
        box.flush()
        gaps = [link.read_gap(memoryview(body), 0, len(body)) for kind, body in received(theirs) if kind == link.GAP]
        assert [(conn, calls) for conn, _, _, _, calls in gaps] == [(1, 3), (3, 1)]
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_a_direction_over_the_limit_at_a_frame_boundary_goes_on_without_its_data() -> None:
    # Thinned: every frame but DATA still reaches the child (its HPACK state stays in step), each
    # DATA frame as an empty PADDED marker of its stream (END_STREAM kept); whole again once the
    # child has caught up.
    loop = asyncio.new_event_loop()
    box = Outbox(1000, lambda: loop, lambda why: None)
    ours, theirs = socket.socketpair()
    headers = bytes((0, 0, 1, 1, 4, 0, 0, 0, 3)) + b"\x83"  # a 1-byte HEADERS frame, stream 3
    body = bytes((0, 0, 200, 0, 0, 0, 0, 0, 3)) + b"m" * 200  # DATA, more to come
    last = bytes((0, 0, 100, 0, 1, 0, 0, 0, 3)) + b"n" * 100  # DATA with END_STREAM
    ping = bytes((0, 0, 8, 6, 0, 0, 0, 0, 0)) + b"p" * 8
    try:
        box.chunk(1, True, b"a" * 1000, True)  # over the limit now
        box.chunk(1, True, headers + body + last[:50], True)  # thinned from here: the cut frame waits
        box.chunk(1, True, last[50:] + ping + headers, False)
        assert box.gapped == set() and box.gap_episodes == 1
        box.sock = ours
        box.flush()  # the child took everything: the next chunk at a boundary goes whole
        box.chunk(1, True, body, True)
        box.flush()
        got = received(theirs)
        kinds = [kind for kind, _ in got]
        assert kinds == [link.CHUNK, link.GAP, link.CHUNK, link.CHUNK, link.GAP, link.CHUNK]
        gaps = [link.read_gap(memoryview(b), 0, len(b)) for k, b in got if k == link.GAP]
        assert [why for _, _, _, why, _ in gaps] == [link.GAP_THIN_START, link.GAP_THIN_END]
        thinned = [b[link.CHUNK_FIXED - 1:] for k, b in got if k == link.CHUNK][1:3]
        left_out, left_out_end = bytes((0, 0, 0, 0, 8, 0, 0, 0, 3)), bytes((0, 0, 0, 0, 9, 0, 0, 0, 3))  # PADDED, empty
        assert thinned == [headers + left_out, left_out_end + headers]  # no DATA bytes, no PING
        assert got[-1][1][link.CHUNK_FIXED - 1:] == body  # whole again
        assert box.gap_since is None and box.dropped == 0  # the episode is over
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_a_child_that_takes_nothing_is_gapped_even_while_thinned() -> None:
    loop = asyncio.new_event_loop()
    box = Outbox(1000, lambda: loop, lambda why: None)
    headers = bytes((0, 0, 1, 1, 4, 0, 0, 0, 3)) + b"\x83"
    try:
        box.chunk(1, False, b"a" * 1000, True)
        box.chunk(1, False, headers, True)  # thinned
        for _ in range(30):
            box.chunk(1, False, headers * 10, True)  # the thinned bytes pile up: no child reads
        assert box.pending <= 1000 + 1000 // 4 + 200 and (1, False) in box.gapped
    finally:
        loop.close()
