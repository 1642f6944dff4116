"""cri_proxy/proxy/recorder_out.py: the bytes on their way to the recorder process, gathered and
sent, and where they go while no child takes them (past the limit: test_recorder_behind.py)."""

from __future__ import annotations

import asyncio
import socket

from cri_proxy.model import link
from cri_proxy.proxy.recorder_out import (
    SEND_BYTES,
    SEND_EVERY_S,
    Outbox,
    prefix,
    send_every,
)
from tests.helpers.linkread import received


def test_while_no_child_takes_the_bytes_chunks_go_to_the_outage_and_after_a_restart_out_again() -> None:
    """Detached (the child died), a chunk is handed to `when_down` (the outage's count of the
    calls it carries) and never queued; a new child on restart() gets chunks again, each with
    its header, as before."""
    loop = asyncio.new_event_loop()
    box = Outbox(1000, lambda: loop, lambda why: None)
    lost: list[tuple[int, bool, bytes, bool]] = []
    box.when_down = lambda *chunk: lost.append(chunk)
    ours, theirs = socket.socketpair()
    try:
        box.chunk(1, True, b"a" * 10, True)
        box.detach(None)
        box.chunk(1, True, b"b" * 20, False)
        box.chunk(2, False, b"c" * 30, True)
        assert lost == [(1, True, b"b" * 20, False), (2, False, b"c" * 30, True)]
        assert box.out == [] and box.pending == 0  # the first one's place: RecorderProcess._died walks unacked
        assert [data for _, _, _, data in box.unacked.chunks] == [b"a" * 10]
        box.restart(ours, [])
        box.chunk(3, False, b"d" * 40, True)
        box.flush()
        got = received(theirs)
        assert [(kind, body[-40:]) for kind, body in got] == [(link.CHUNK, b"d" * 40)]
        assert link.CHUNK_HEAD.unpack(link.LENGTH.pack(len(got[0][1]) + 1) + bytes([link.CHUNK]) + got[0][1][:-40]
                                      )[2:4] == (3, False)
        assert len(lost) == 2
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_send_bytes_waiting_go_out_at_once_and_less_waits_for_the_timer() -> None:
    """The timer (SEND_EVERY_S) never fires here: the loop does not run. A chunk below
    SEND_BYTES waits for it; once more than SEND_BYTES wait, the next chunk sends them (as
    far as the socket takes them) and itself waits. The recorder gets the same messages."""
    loop = asyncio.new_event_loop()
    box = Outbox(16 << 20, lambda: loop, lambda why: None)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    big = b"a" * SEND_BYTES
    try:
        box.sock = ours
        box.chunk(1, False, big, True)
        assert received(theirs) == [] and box.pending == link.CHUNK_HEAD.size + SEND_BYTES
        box.chunk(2, True, b"b" * 10, True)
        assert box.unacked.shipped - box.pending > 0  # sent, before any timer
        assert box.out[-1] == b"b" * 10  # this one waits
        theirs.setblocking(True)
        head = theirs.recv(link.CHUNK_HEAD.size, socket.MSG_WAITALL)
        assert link.CHUNK_HEAD.unpack(head)[:4] == (link.CHUNK_FIXED + SEND_BYTES, link.CHUNK, 1, False)
        got: list[tuple[int, bytes]] = []
        reader = link.Reader()
        reader.feed(head, lambda kind, view, start, stop: got.append((kind, bytes(view[start:stop]))))
        theirs.settimeout(10)
        while len(got) < 2:  # the rest, as add_writer's flush would send it once the socket has room
            box.flush()
            reader.feed(theirs.recv(1 << 20), lambda kind, view, start, stop: got.append((kind, bytes(view[start:stop]))))
        assert [body[link.CHUNK_FIXED - 1:] for _, body in got] == [big, b"b" * 10] and box.pending == 0
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_the_chunks_wait_at_most_a_fifth_of_the_flush_interval() -> None:
    assert send_every(0.1) == SEND_EVERY_S == 0.02  # the default --flush-interval
    assert send_every(0.01) == 0.002  # what a kill -9 of the proxy loses stays within the interval


def test_a_chunk_shipped_with_its_prefix_has_the_header_the_link_defines() -> None:
    """The taps' way in (ship, with the direction's fields packed once) writes what
    link.chunk_head writes: the recorder reads the same header."""
    loop = asyncio.new_event_loop()
    box = Outbox(1 << 20, lambda: loop, lambda why: None)
    ours, theirs = socket.socketpair()
    try:
        box.ship(70000, False, prefix(70000, False), b"x" * 5, True)
        box.chunk(70000, False, b"y" * 5, True)
        head, again = box.out[0], box.out[2]
        fields = link.CHUNK_HEAD.unpack(head)
        assert head == link.chunk_head(70000, False, fields[4], fields[5], 5)
        assert link.CHUNK_HEAD.unpack(again)[:4] == fields[:4] == (link.CHUNK_FIXED + 5, link.CHUNK, 70000, False)
        box.sock = ours
        box.flush()
        assert [(kind, body[link.CHUNK_FIXED - 1:]) for kind, body in received(theirs)] == [
            (link.CHUNK, b"x" * 5), (link.CHUNK, b"y" * 5)]
    finally:
        ours.close()
        theirs.close()
        loop.close()


def test_a_send_that_finds_the_child_gone_queues_nothing_for_the_next_one() -> None:
    """The send SEND_BYTES start fails (the child is gone): the chunk that started it goes
    where chunks go while no child takes them, and nothing waits for a restarted child."""
    loop = asyncio.new_event_loop()
    lost: list[tuple[int, bool, bytes, bool]] = []
    box = Outbox(16 << 20, lambda: loop, lambda why: box.detach(None))  # as RecorderProcess._died does
    box.when_down = lambda *chunk: lost.append(chunk)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        box.sock = ours
        box.chunk(1, False, b"a" * SEND_BYTES, True)
        theirs.close()
        box.chunk(1, True, b"b" * 10, True)
        assert box.down and box.out == [] and box.pending == 0
        assert lost == [(1, True, b"b" * 10, True)]
    finally:
        ours.close()
        loop.close()
