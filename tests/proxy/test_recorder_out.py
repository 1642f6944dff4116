"""cri_proxy/proxy/recorder_out.py: the bytes on their way to the recorder process, bounded in
bytes: beyond the limit a direction is thinned (no DATA) or its chunks dropped, and the link says
where (GAP) when they resume."""

from __future__ import annotations

import asyncio
import socket

from cri_proxy.model import link
from cri_proxy.proxy.recorder_out import SEND_BYTES, SEND_EVERY_S, Outbox, prefix, send_every


def received(sock: socket.socket) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    reader = link.Reader()
    sock.setblocking(False)
    try:
        while data := sock.recv(1 << 16):
            reader.feed(data, lambda kind, view, start, stop: got.append((kind, bytes(view[start:stop]))))
    except BlockingIOError:
        pass
    return got


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
