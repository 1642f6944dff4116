"""cri_proxy/proxy/recorder_out.py: the bytes on their way to the recorder process, bounded in
bytes: beyond the limit chunks are dropped, and the link says where (GAP) when they resume."""

from __future__ import annotations

import asyncio
import socket

from cri_proxy.model import link
from cri_proxy.proxy.recorder_out import Outbox


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
