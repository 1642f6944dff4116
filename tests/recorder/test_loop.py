"""The recorder process's loop: link messages in, calls recorded, STATS acknowledging them out.

The Worker runs in a thread here, on one end of a real socketpair, with a real Recorder and
SQLite file; the test plays the proxy on the other end with real HTTP/2 frames.
"""

from __future__ import annotations

import pathlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.h2 import frames as h2
from cri_proxy.model import link
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo
from cri_proxy.pb.runtime.v1 import api_pb2 as api
from cri_proxy.proxy.recorder_child import SOCKET_BUFFER_BYTES
from cri_proxy.recorder.behind import MAX_LAG_S
from cri_proxy.recorder.loop import PROXY_GONE, Worker
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.setup import make_recorder
from cri_proxy.recorder.spool import READ_SIZE, Spool, spill_file
from tests.helpers.calls import rows
from tests.helpers.worker_link import HEADERS, PATH, Proxy, linked_worker

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def linked(tmp_path: pathlib.Path) -> Iterator[tuple[Proxy, pathlib.Path, SessionInfo]]:
    yield from linked_worker(tmp_path, SessionInfo(listen="unix:///run/p.sock"), None)


def test_calls_are_recorded_and_acknowledged(linked: tuple[Proxy, pathlib.Path, SessionInfo]) -> None:
    proxy, path, _ = linked
    proxy.chunk(True, bytes((0, 0, 0, 4, 0, 0, 0, 0, 0)))  # the client's empty SETTINGS
    for stream_id in (1, 3, 5):
        proxy.call(stream_id)
    report = proxy.stats_until(recorded=3, pending=0)
    assert report.session_id == 1 and report.stats.healthy
    assert rows(path, "SELECT stream_id, path, status_code, peer_pid FROM calls ORDER BY id") == \
        [(1, PATH, 5, 42), (3, PATH, 5, 42), (5, PATH, 5, 42)]


def test_a_repeated_reply_waits_as_a_reference_and_every_call_is_recorded_with_it_and_acknowledged(
        linked: tuple[Proxy, pathlib.Path, SessionInfo]) -> None:
    """The same 30 KB reply call after call, in chunks cut anywhere (as the relay reads them):
    the backlog keeps it as references (recorder.squeeze) once the tap knows it, every call
    is recorded with the whole body, and the proxy is acknowledged every byte it sent."""
    proxy, path, _ = linked
    reply = api.ContainerStatusResponse(status=api.ContainerStatus(id="c" * 30_000)).SerializeToString()
    server = Encoder()
    answers = b""
    for stream_id in range(1, 121, 2):
        proxy.call(stream_id, answer=False)
        answers += HeadersFrame(stream_id, data=server.encode([(":status", "200"), ("content-type", "application/grpc")]),
                                flags=["END_HEADERS"]).serialize()
        answers += DataFrame(stream_id, data=b"\x00" + len(reply).to_bytes(4, "big") + reply).serialize()
        answers += HeadersFrame(stream_id, data=server.encode([("grpc-status", "0")]),
                                flags=["END_HEADERS", "END_STREAM"]).serialize()
        if stream_id == 5:  # three calls whole: the tap knows the reply, the intake looks for it
            proxy.chunk(False, answers)
            answers = b""
            proxy.stats_until(recorded=3)
            continue
        cut = len(answers) - 7_001 * (stream_id % 5)  # a reply cut by the relay's read, or not
        proxy.chunk(False, answers[:cut])
        answers = answers[cut:]
    proxy.chunk(False, answers)
    proxy.stats_until(recorded=60, pending=0)  # `received` is all that was sent, squeezed or not
    stored = rows(path, "SELECT data FROM call_messages WHERE direction = 'response' ORDER BY call_id")
    assert [data for (data,) in stored] == [reply] * 60
    assert proxy.worker is not None and proxy.worker.spool.squeezer is not None
    assert proxy.worker.spool.squeezer.saved > 40 * len(reply)


def test_an_open_call_is_pending_until_it_ends(linked: tuple[Proxy, pathlib.Path, SessionInfo]) -> None:
    proxy, path, _ = linked
    proxy.call(1, answer=False)
    proxy.call(3)
    proxy.stats_until(recorded=1, pending=1)
    proxy.chunk(False, h2.grpc_error_frame(1, 0, ""))
    proxy.stats_until(recorded=2, pending=0)
    proxy.send(link.closed_message(1, time.monotonic(), None))
    proxy.stats_until(recorded=2, pending=0)


def test_a_quiet_link_is_not_taken_for_a_recorder_behind(linked: tuple[Proxy, pathlib.Path, SessionInfo]) -> None:
    proxy, path, _ = linked
    settings = bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))
    proxy.chunk(True, settings, ago=MAX_LAG_S - 0.5)  # relayed late, read in time
    stamped = time.monotonic() - (MAX_LAG_S - 0.5)
    proxy.stats_until(recorded=0)
    while time.monotonic() < stamped + MAX_LAG_S + 0.1:  # that chunk is now older than the lag rule allows
        time.sleep(0.05)
    proxy.send(link.session_message({"runtime_api": "v1"}))  # no relayed bytes: says nothing of any lag
    proxy.stats_until(recorded=0)
    proxy.call(1)
    assert proxy.stats_until(recorded=1).stats.lost == 0
    assert rows(path, "SELECT count(*) FROM losses") == [(0,)]


def test_a_restarted_recorder_carries_on_the_session_and_writes_the_loss(tmp_path: pathlib.Path) -> None:
    session = SessionInfo(listen="unix:///run/p.sock")
    for proxy, _, _ in linked_worker(tmp_path, session, None):  # the first recorder: 2 calls, then it "dies"
        proxy.call(1)
        proxy.call(3)
        first = proxy.stats_until(recorded=2, pending=0)
    loss = LossEpisode(2000.0, 2001.0, "recorder died", 7)
    carried = RecorderStats(first.stats.recorded, 4, 1, 2, 0, 0, True)
    for proxy, path, _ in linked_worker(tmp_path, session, link.Resume(first.session_id, carried, loss)):
        proxy.call(1)
        proxy.stats_until(recorded=3, lost=4 + 7)
    assert rows(path, "SELECT id, calls_recorded, calls_lost, loss_episodes, pid FROM sessions") == \
        [(1, 3, 11, 3, session.pid)]
    assert rows(path, "SELECT session_id, reason, calls_lost FROM losses") == [(1, "recorder died", 7)]


def test_calls_begun_in_bytes_the_proxy_dropped_are_counted_lost(
        linked: tuple[Proxy, pathlib.Path, SessionInfo]) -> None:
    proxy, path, _ = linked
    proxy.call(1)
    proxy.stats_until(recorded=1, lost=0)
    proxy.send(link.gap_message(1, True, time.monotonic(), link.GAP_BEHIND, 2))
    proxy.stats_until(recorded=1, lost=2)


def test_the_backlog_is_recorded_when_the_proxy_is_killed_and_the_session_says_so(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)  # as the proxy's
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    proxy = Proxy(ours)
    proxy.send(link.open_message(1, 42, 0, "unix:///run/rt.sock"))
    for stream_id in range(1, 200, 2):  # all of it sent before the recorder reads a byte
        proxy.call(stream_id)
    ours.close()  # as a proxy killed with -9: no STOP
    Worker(theirs, recorder).run()
    theirs.close()
    assert rows(path, "SELECT count(*) FROM calls") == [(100,)]
    assert rows(path, "SELECT calls_recorded, calls_lost, loss_episodes, ended_at IS NOT NULL FROM sessions") == \
        [(100, 0, 1, 1)]
    assert rows(path, "SELECT reason, calls_lost FROM losses") == [(PROXY_GONE, 0)]


def _unread_link(tmp_path: pathlib.Path) -> tuple[pathlib.Path, socket.socket, socket.socket, Recorder, Proxy]:
    """A link whose proxy end can hold as much as the proxy's does, one connection open, and
    the recorder of a Worker that does not run yet."""
    path = tmp_path / "calls.db"
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    proxy = Proxy(ours)
    proxy.send(link.open_message(1, 42, 0, "unix:///run/rt.sock"))
    return path, ours, theirs, recorder, proxy


def _request_frames(proxy: Proxy, stream_id: int, body: bytes) -> bytes:
    """A request's HEADERS and its body in DATA frames of 16 KB, the last with END_STREAM."""
    frames = HeadersFrame(stream_id, data=proxy.encoder.encode(HEADERS), flags=["END_HEADERS"]).serialize()
    for at in range(0, len(body), 16384):
        end = ["END_STREAM"] if at + 16384 >= len(body) else []
        frames += DataFrame(stream_id, data=body[at:at + 16384], flags=end).serialize()
    return bytes(frames)


def test_a_backlog_past_the_spools_memory_waits_in_a_file_beside_the_database_and_is_recorded(
        tmp_path: pathlib.Path) -> None:
    """12 MB of calls sent while the recorder cannot keep up: past MEMORY_BYTES they wait in
    the spill file (nameless: the directory holds only the database), and every call is
    recorded whole once the proxy is gone. (A different body each call: a repeated one would
    wait as references, recorder.squeeze, and never fill the memory.)"""
    path, ours, theirs, recorder, proxy = _unread_link(tmp_path)

    def send() -> None:
        for stream_id in range(1, 240, 2):
            message = b"\x0a\xa0\x8d\x06" + bytes([stream_id]) * 100_000  # container_id: 100,000 bytes
            body = b"\x00" + len(message).to_bytes(4, "big") + message
            frames = _request_frames(proxy, stream_id, body)
            proxy.chunk(True, bytes(frames))
            proxy.chunk(False, h2.grpc_error_frame(stream_id, 5, "no such container"))
        ours.close()  # as a proxy killed with -9

    worker = Worker(theirs, recorder, spill=spill_file(str(tmp_path)))
    sender = threading.Thread(target=send)
    sender.start()
    deepest = 0
    real_work = worker.work

    def work(quota: int = READ_SIZE) -> None:  # the deepest the file got, seen by the recorder's thread
        nonlocal deepest
        deepest = max(deepest, worker.spool.spilled)
        real_work(quota)

    worker.work = work  # type: ignore[method-assign]
    worker.run()
    sender.join()
    theirs.close()
    assert deepest > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in tmp_path.glob("calls.db*"))
    assert rows(path, "SELECT count(*), sum(outcome = 'completed') FROM calls") == [(120, 120)]
    assert rows(path, "SELECT calls_recorded, calls_lost FROM sessions") == [(120, 0)]


def test_large_chunks_handed_as_views_of_the_backlog_record_every_body_byte_for_byte(
        tmp_path: pathlib.Path) -> None:
    """Chunks larger than VIEW_BYTES reach the tap as views of the spool's blocks (in memory and
    read back from the spill file), not copies: bodies that differ call to call, cut by DATA
    frames and by the relay's chunks (so the tap keeps views of earlier blocks while later ones
    are read), are stored exactly as sent."""
    path, ours, theirs, recorder, proxy = _unread_link(tmp_path)
    messages = [b"\x0a\xa0\x8d\x06" + bytes([i]) * 50_000 + bytes(range(256)) * 195 + bytes([i]) * 80
                for i in range(40)]  # container_id: 100,000 bytes, a different one each call

    def send() -> None:
        for i, message in enumerate(messages):
            stream_id = 2 * i + 1
            body = b"\x00" + len(message).to_bytes(4, "big") + message
            frames = _request_frames(proxy, stream_id, body)
            cut = 9_001 + 997 * i  # the relay's reads cut frames anywhere
            proxy.chunk(True, bytes(frames[:cut]))
            proxy.chunk(True, bytes(frames[cut:]))
            proxy.chunk(False, h2.grpc_error_frame(stream_id, 5, "no such container"))
        ours.close()

    worker = Worker(theirs, recorder)
    worker.spool = Spool(spill_file(str(tmp_path)), memory=READ_SIZE)  # most of it by way of the file
    sender = threading.Thread(target=send)
    sender.start()
    worker.run()
    sender.join()
    theirs.close()
    stored = rows(path, "SELECT data FROM call_messages WHERE direction = 'request' ORDER BY call_id")
    assert [data for (data,) in stored] == messages
