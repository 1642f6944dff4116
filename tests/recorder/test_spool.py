"""cri_proxy/recorder/spool.py: link bytes read off a real socket in blocks, handed on message by message."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from cri_proxy.model import link
from cri_proxy.recorder.spool import READ_SIZE, Spool


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def handled(spool: Spool) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    while spool:
        spool.handle_next(lambda kind, view, start, stop: got.append((kind, bytes(view[start:stop]))))
    return got


def test_messages_split_anywhere_between_blocks_come_out_whole_and_in_order(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    sent = [(link.CHUNK, bytes([i % 251]) * size) for i, size in enumerate((0, 1, 3, 700, 1 << 17, 5, 2))]
    stream = b"".join(link.message(kind, body) for kind, body in sent)
    spool = Spool()
    for cut in (1, 2, 3, 4, 6, 11, 300, 1 << 16, len(stream)):  # each piece read as its own block
        ours.sendall(stream[:cut])
        stream = stream[cut:]
        assert spool.read(theirs, 1 << 30)
    assert not stream
    assert handled(spool) == sent
    assert spool.bytes == 0


def test_it_reads_up_to_its_limit_and_leaves_the_rest_in_the_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.setblocking(False)
    body = b"x" * 1000
    sent = 0
    try:
        while sent < 4 * READ_SIZE:
            sent += ours.send(link.message(link.CHUNK, body))
    except BlockingIOError:
        pass  # the socket buffer is full: enough
    spool = Spool()
    assert spool.read(theirs, 3000)
    assert 3000 <= spool.bytes <= READ_SIZE + 3000  # stopped at the first block past the limit
    assert spool.read(theirs, 1 << 30)
    assert spool.bytes == sent  # everything that was sent, now
    assert handled(spool) == [(link.CHUNK, body)] * (sent // len(link.message(link.CHUNK, body)))


def test_the_end_of_the_stream_is_told(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    ours.sendall(link.message(link.STOP))
    ours.shutdown(socket.SHUT_WR)
    spool = Spool()
    assert not spool.read(theirs, 1 << 30)  # read to the end: what came before is kept
    assert handled(spool) == [(link.STOP, b"")]
