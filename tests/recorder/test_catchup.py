"""Catching up (recorder.catchup): skims close together are one loss episode; thinned calls are recorded."""

from __future__ import annotations

import pathlib
import socket
import threading
import time

import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.h2 import frames as h2
from cri_proxy.model import link
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.behind import MERGE_S, SKIM, SKIM_AT, THIN, THIN_AT, WHOLE
from cri_proxy.recorder.loop import Worker
from cri_proxy.recorder.opencall import LEFT_OUT
from cri_proxy.recorder.setup import make_recorder
from cri_proxy.recorder.spool import READ_SIZE
from tests.helpers.calls import make_call, rows

pytestmark = pytest.mark.timeout(30)

PATH = "/runtime.v1.RuntimeService/ContainerStatus"


def _skimming_worker(path: pathlib.Path) -> tuple[Worker, socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    return Worker(theirs, recorder), ours, theirs


def test_skims_close_together_are_one_loss_episode(tmp_path: pathlib.Path) -> None:
    """A flood that comes and goes: the recorder records again as soon as it has caught up,
    and the skims that follow within a second count as the same episode."""
    path = tmp_path / "calls.db"
    worker, ours, theirs = _skimming_worker(path)
    skimmed = make_call("Version", {}, {})
    worker.leave_out(SKIM, 3.0)
    for _ in range(3):
        worker._skimmed(skimmed)
    worker.leave_out(THIN, 0.0)
    assert not worker.tap.skimming and worker.tap.thinning  # calls are recorded again at once, thin
    worker.leave_out(SKIM, 3.0)  # behind again straight away: the same flood
    for _ in range(2):
        worker._skimmed(skimmed)
    worker.leave_out(WHOLE, 0.0)
    assert not worker.tap.skimming and not worker.tap.thinning
    worker.end_episode(time.time())  # under a second after it ended: it may still go on
    worker.end_episode(time.time() + MERGE_S + 0.1)
    worker.leave_out(SKIM, 3.0)  # a later flood: an episode of its own
    worker._skimmed(skimmed)
    worker.finish()
    ours.close()
    theirs.close()
    assert rows(path, "SELECT reason, calls_lost FROM losses ORDER BY id") == \
        [("recorder fell behind", 5), ("recorder fell behind", 1)]
    assert rows(path, "SELECT calls_lost, loss_episodes FROM sessions") == [(6, 2)]


def _behind_by(tmp_path: pathlib.Path, budget: int, backlog: int) -> tuple[list[tuple[int, int, int]], int]:
    """A recorder whose spool already holds about `backlog` bytes of 16 KB calls when it starts
    (read in by the spool itself, from a real socket, before the loop runs): each call's stream
    id, its request messages and whether its note says they were left out; and the calls the
    session counts lost."""
    path = tmp_path / "calls.db"
    ours, theirs = socket.socketpair()
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    worker = Worker(theirs, recorder, budget_bytes=budget)
    message = b"\x0a\x80\x80\x01" + b"c" * 16384  # ContainerStatus: a 16 KiB container_id
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    encoder = Encoder()
    headers = [(":method", "POST"), (":scheme", "http"), (":path", PATH), (":authority", "localhost"),
               ("content-type", "application/grpc"), ("te", "trailers")]

    def send() -> None:
        ours.sendall(link.open_message(1, 42, 0, "unix:///run/rt.sock"))
        for stream_id in range(1, 2 * (backlog // len(body)) + 1, 2):
            frames = HeadersFrame(stream_id, data=encoder.encode(headers), flags=["END_HEADERS"]).serialize()
            for at in range(0, len(body), 16384):
                end = ["END_STREAM"] if at + 16384 >= len(body) else []
                frames += DataFrame(stream_id, data=body[at:at + 16384], flags=end).serialize()
            ours.sendall(link.chunk_head(1, True, time.time(), time.monotonic(), len(frames)) + frames)
            answer = h2.grpc_error_frame(stream_id, 5, "no such container")
            ours.sendall(link.chunk_head(1, False, time.time(), time.monotonic(), len(answer)) + answer)
        ours.close()  # as a proxy killed with -9

    sender = threading.Thread(target=send)
    sender.start()
    theirs.settimeout(10)
    while worker.spool.read_once(theirs, 1 << 30):  # all of it waits before a call is handled
        pass
    sender.join()
    worker.run()
    theirs.close()
    calls = rows(path, "SELECT stream_id, request_count, instr(notes, ?) > 0 FROM calls ORDER BY stream_id", LEFT_OUT)
    return calls, rows(path, "SELECT calls_lost FROM sessions")[0][0]


def _runs(calls: list[tuple[int, int, int]], made: int) -> list[str]:
    """The calls in stream order as runs of 'whole', 'thin' and 'lost' (missing stream ids)."""
    kinds = {stream_id: ("thin" if thin else "whole") for stream_id, count, thin in calls
             if count == (0 if thin else 1)}
    assert len(kinds) == len(calls), calls  # a thin call has no message, a whole one its one
    runs: list[str] = []
    for stream_id in range(1, 2 * made + 1, 2):
        kind = kinds.get(stream_id, "lost")
        if not runs or runs[-1] != kind:
            runs.append(kind)
    return runs


def test_a_recorder_behind_records_calls_without_their_messages_and_then_whole_again(
        tmp_path: pathlib.Path) -> None:
    """A backlog between the thin and skim marks: none lost; the calls that start while it is
    above WHOLE_AT are recorded without their messages, with a note saying so."""
    budget = 1 << 20
    backlog = int(budget * (THIN_AT + SKIM_AT) / 2) + READ_SIZE  # past the thin mark after the first block
    calls, lost = _behind_by(tmp_path, budget, backlog)
    made = backlog // (16384 + 9)
    assert lost == 0 and len(calls) == made
    assert _runs(calls, made) == ["whole", "thin", "whole"]


def test_a_recorder_further_behind_skims_then_thins_then_records_whole(tmp_path: pathlib.Path) -> None:
    budget = 1 << 20
    backlog = int(budget * (SKIM_AT + 1) / 2) + READ_SIZE  # past the skim mark after the first block
    calls, lost = _behind_by(tmp_path, budget, backlog)
    made = backlog // (16384 + 9)
    assert lost > 0 and len(calls) + lost == made
    assert _runs(calls, made) == ["whole", "lost", "thin", "whole"]
