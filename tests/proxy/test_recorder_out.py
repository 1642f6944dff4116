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
