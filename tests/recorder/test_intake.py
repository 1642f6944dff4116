"""cri_proxy/recorder/intake.py: the recorder's reading thread, on a real socket pair."""

from __future__ import annotations

import pathlib
import socket
import threading

from cri_proxy.model import link
from cri_proxy.recorder.intake import Intake
from cri_proxy.recorder.spool import READ_SIZE, Spool, spill_file

WAIT_S = 10.0


def _until(intake: Intake, spool: Spool, size: int) -> None:
    while spool.bytes < size and intake.ended is None:
        assert intake.arrived.wait(WAIT_S)
        intake.arrived.clear()


def test_it_reads_on_its_own_into_the_spool_and_tells_when_the_proxy_is_gone(tmp_path: pathlib.Path) -> None:
    ours, theirs = socket.socketpair()
    spool = Spool(spill_file(str(tmp_path)), memory=READ_SIZE)
    intake = Intake(theirs, spool, lambda: 1 << 30)
    intake.start()
    stream = link.message(link.CHUNK, b"x" * 100_000) * 30  # 3 MB, past the socket's buffer
    ours.sendall(stream)  # returns once all of it is read: nobody else reads this socket
    _until(intake, spool, len(stream))
    assert spool.bytes == len(stream) and spool.spilled > 0
    ours.close()  # the proxy is gone: everything it sent is in the spool
    assert intake.arrived.wait(WAIT_S)
    intake._thread.join(WAIT_S)
    assert intake.ended == "the proxy is gone"
    intake.stop()
    got = []
    while spool:
        spool.handle_next(lambda kind, view, start, stop: got.append(stop - start))
    assert got == [100_000] * 30
    spool.close()
    theirs.close()


def test_it_stops_at_its_room_and_goes_on_when_the_recorder_has_handled_some() -> None:
    ours, theirs = socket.socketpair()
    spool = Spool()
    room = [2 * READ_SIZE]
    intake = Intake(theirs, spool, lambda: room[0])
    intake.start()
    message = link.message(link.CHUNK, b"y" * 1000)
    stream = message * (8 * READ_SIZE // len(message))
    sender = threading.Thread(target=ours.sendall, args=(stream,))
    sender.start()
    _until(intake, spool, 2 * READ_SIZE)
    assert 2 * READ_SIZE <= spool.bytes <= 3 * READ_SIZE  # one read past the room at most
    room[0] = 1 << 30
    intake.handled.set()
    _until(intake, spool, len(stream))
    sender.join(WAIT_S)
    assert spool.bytes == len(stream)
    intake.stop()  # while its recv waits: the socket's reading side is shut to wake it
    assert intake.ended is None
    ours.close()
    theirs.close()
