"""The recorder link's wire format: every kind of message round-trips through the Reader."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from cri_proxy.model import link
from cri_proxy.model.call import Direction, Message, Outcome, RecordedCall
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo
from tests.helpers.link import feed_in_pieces

pytestmark = pytest.mark.timeout(10)


def read_all(data: bytes, sizes: tuple[int, ...] = ()) -> list[tuple[int, bytes, Any]]:
    """Feed `data` to a Reader (in pieces of `sizes`, then the rest); (kind, raw body, decoded)."""
    got: list[tuple[int, bytes, Any]] = []
    decoders = {link.OPEN: link.read_open, link.CLOSED: link.read_closed, link.UPSTREAM: link.read_upstream,
                link.GAP: link.read_gap, link.SESSION: link.read_session, link.READY: link.read_ready,
                link.ERROR: link.read_error, link.STATS: link.read_stats, link.INIT: link.unpickled,
                link.CALL: link.unpickled}

    def take(kind: int, view: memoryview, start: int, stop: int) -> None:
        decode = decoders.get(kind)
        got.append((kind, bytes(view[start:stop]), decode(view, start, stop) if decode else None))

    feed_in_pieces(data, sizes, take)
    return got


def one(data: bytes) -> Any:
    [(_, _, value)] = read_all(data)
    return value


@pytest.mark.parametrize("pid, uid", [(1234, 0), (None, None)])
def test_open_round_trips(pid: int | None, uid: int | None) -> None:
    upstream = "unix:///run/containerd/containerd.sock"
    assert one(link.open_message(7, pid, uid, upstream)) == (7, pid, uid, upstream)


@pytest.mark.parametrize("gid, name, exe", [(0, "kubelet", "/usr/bin/kubelet"), (5, "crictl", None),
                                            (None, None, "/opt/é/agent"), (None, None, None)])
def test_open_carries_the_rest_of_the_peer(gid: int | None, name: str | None, exe: str | None) -> None:
    upstream = "unix:///run/containerd/containerd.sock"
    data = link.open_message(7, 1234, 0, upstream, gid, name, exe)
    [(_, body, _)] = read_all(data)
    opened = link.read_opened(memoryview(body), 0, len(body))
    assert opened == link.Opened(7, 1234, 0, upstream, gid, name, exe)
    assert one(data) == (7, 1234, 0, upstream)  # read_open: what it always said


def test_an_open_without_the_peer_facts_reads_as_unknown() -> None:
    body = link._OPEN.pack(3, 99, 1000) + b"unix:///up.sock"  # the layout before the facts were added
    assert link.read_opened(memoryview(body), 0, len(body)) == link.Opened(3, 99, 1000, "unix:///up.sock")
    cut = link._OPEN.pack(3, 99, 1000) + b"unix:///up.sock\0\1"
    with pytest.raises(ValueError, match="kind 2"):
        link.read_opened(memoryview(cut), 0, len(cut))


@pytest.mark.parametrize("reason", [None, "", "upstream reset the connection: ECONNRESET é"])
def test_closed_round_trips(reason: str | None) -> None:
    assert one(link.closed_message(3, 12.5, reason)) == (3, 12.5, reason)


def test_upstream_and_gap_round_trip() -> None:
    assert one(link.upstream_message(9, "unix:///run/image.sock")) == (9, "unix:///run/image.sock")
    assert one(link.gap_message(4, True, 99.25)) == (4, True, 99.25, link.GAP_BEHIND, 0)
    assert one(link.gap_message(4, False, 1.0, link.GAP_RESTARTED)) == (4, False, 1.0, link.GAP_RESTARTED, 0)
    assert one(link.gap_message(4, True, 1.0, link.GAP_BEHIND, 7)) == (4, True, 1.0, link.GAP_BEHIND, 7)


def test_session_changes_round_trip() -> None:
    changes = {"runtime_api": "v1,v1alpha2", "image_api": None}
    assert one(link.session_message(changes)) == changes


@pytest.mark.parametrize("session_id, fault", [(5, ""), (None, "database: cannot create it: Is a directory")])
def test_ready_round_trips(session_id: int | None, fault: str) -> None:
    assert one(link.ready_message(session_id, fault)) == link.Ready(session_id, fault)


def test_error_round_trips() -> None:
    assert one(link.error_message("cannot open /var/lib/cri-proxy/calls.db")) == \
        "cannot open /var/lib/cri-proxy/calls.db"


@pytest.mark.parametrize("healthy, session_id", [(True, 1), (False, None)])
def test_stats_round_trip(healthy: bool, session_id: int | None) -> None:
    stats = RecorderStats(recorded=10**12, lost=3, skipped=4, loss_episodes=2, queued=17, queued_bytes=1 << 40,
                          healthy=healthy)
    assert one(link.stats_message(stats, 123456789, 8, session_id)) == \
        link.Stats(stats, 123456789, 8, session_id)


def test_init_and_call_round_trip() -> None:
    config = RecordConfig(db=pathlib.Path("/tmp/calls.db"), require=True, include=("List*",), sample=("Image*=0.5",))
    loss = LossEpisode(1.0, 2.0, "recorder died", 11)
    resume = link.Resume(3, RecorderStats(1, 2, 3, 4, 0, 0, True), loss)
    init = link.Init(config, SessionInfo(listen="unix:///run/p.sock", runtime_api="v1"), "INFO", resume)
    assert one(link.pickled(link.INIT, init)) == init
    call = RecordedCall(1, 3, 1700000000.5, "/runtime.v1.RuntimeService/Version", duration_s=0.002,
                        status_code=0, outcome=Outcome.COMPLETED, request_metadata=[("user-agent", "kubelet")])
    call.add_message(Message(Direction.REQUEST, 0, 0.001, b"\x0a\x02v1"))
    assert one(link.pickled(link.CALL, call)) == call


@pytest.mark.parametrize("message", [link.message(link.STATS, b"short"), link.message(link.OPEN, b"\x01"),
                                     link.message(link.SESSION, b"[1, 2]")])
def test_a_malformed_body_is_a_value_error(message: bytes) -> None:
    with pytest.raises(ValueError):
        read_all(message)
