"""cri_proxy/recorder/spool.py: link bytes read off a real socket in blocks (past a few MB into a
spill file), handed on message by message."""

from __future__ import annotations

import os
import pathlib
import socket
from collections.abc import Iterator

import pytest

from cri_proxy.model import link
from cri_proxy.recorder.spool import READ_SIZE, Spool, spill_file


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


def _stream(count: int) -> tuple[list[tuple[int, bytes]], bytes]:
    sent = [(link.CHUNK, bytes([i % 251]) * (1000 + 37 * i)) for i in range(count)]
    return sent, b"".join(link.message(kind, body) for kind, body in sent)


def test_past_its_memory_the_backlog_waits_in_a_nameless_file_and_comes_back_in_order(
        tmp_path: pathlib.Path, pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    fd = spill_file(str(tmp_path))
    assert fd is not None
    assert os.listdir(tmp_path) == []  # never a name: nothing left behind, however the recorder ends
    spool = Spool(fd, memory=READ_SIZE)
    sent, stream = _stream(300)  # about 1.8 MB
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), 200_000):
        ours.sendall(stream[start:start + 200_000])
        assert spool.read(theirs, 1 << 30)
        if start == 400_000:
            assert spool.spilled > 0 and sum(map(len, spool.blocks)) <= 2 * READ_SIZE
            spool.handle_next(lambda kind, view, a, b: got.append((kind, bytes(view[a:b]))))  # handled meanwhile
    cut = spool._have  # the bytes of a message cut between blocks, held out of the count
    assert spool.bytes == len(stream) - sum(len(link.message(k, b)) for k, b in got) - cut
    got += handled(spool)
    assert got == sent
    assert os.fstat(fd).st_size > 0
    spool.tidy()  # read to its end: the disk space back
    assert os.fstat(fd).st_size == 0 and spool.spilled == 0
    ours.sendall(stream[:5000])  # caught up: memory first again
    assert spool.read(theirs, 1 << 30)
    assert spool.spilled == 0 and spool.blocks
    spool.close()


def test_a_spill_file_that_refuses_bytes_leaves_them_in_memory_in_order(
        tmp_path: pathlib.Path, pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    path = tmp_path / "read-only"
    path.write_bytes(b"")
    spool = Spool(os.open(path, os.O_RDONLY), memory=READ_SIZE)  # every write fails (EBADF)
    sent, stream = _stream(300)
    for start in range(0, len(stream), 100_000):
        ours.sendall(stream[start:start + 100_000])
        assert spool.read(theirs, 1 << 30)
    assert spool.spilled == 0 and spool.bytes == len(stream)
    assert handled(spool) == sent
    spool.close()


def test_without_a_place_for_the_file_the_backlog_stays_in_memory(tmp_path: pathlib.Path) -> None:
    assert spill_file(None) is None  # no --db
    assert spill_file(str(tmp_path / "gone")) is None  # the directory is not there: said, not raised


def test_the_views_it_hands_on_stay_as_they_were_while_later_blocks_come_from_memory_and_file(
        tmp_path: pathlib.Path, pair: tuple[socket.socket, socket.socket]) -> None:
    """The tap keeps views of what it is handed (Spool.handle_next) rather than copies: no
    block's memory is reused, not even the file's read-back."""
    ours, theirs = pair
    spool = Spool(spill_file(str(tmp_path)), memory=READ_SIZE)
    sent, stream = _stream(300)
    views: list[memoryview] = []
    for start in range(0, len(stream), 200_000):
        ours.sendall(stream[start:start + 200_000])
        assert spool.read(theirs, 1 << 30)
    assert spool.spilled > 0
    while spool:
        spool.handle_next(lambda kind, view, a, b: views.append(view[a:b]))
    assert [bytes(view) for view in views] == [body for _, body in sent]


def test_a_handler_that_asks_for_a_pause_gets_the_rest_of_the_block_next_time(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    sent = [(link.CHUNK, bytes([i]) * 10) for i in range(6)]
    ours.sendall(b"".join(link.message(kind, body) for kind, body in sent))
    spool = Spool()
    assert spool.read(theirs, 1 << 30)
    got: list[tuple[int, bytes]] = []

    def pausing(kind: int, view: memoryview, start: int, stop: int) -> bool:
        got.append((kind, bytes(view[start:stop])))
        return len(got) % 2 == 1  # a pause after the first, third and fifth

    sizes = []
    while spool:
        sizes.append(spool.handle_next(pausing))
    assert got == sent
    assert len(sizes) == 4 and sizes[1:] == [0, 0, 0]  # one block, handed on in four goes
