"""cri_proxy/recorder/prepared.py: a call on its way to the writer: its cost, hashes and JSON, each made once."""

from __future__ import annotations

import hashlib

from cri_proxy.messages.decode import JsonDecoder
from cri_proxy.model.call import Direction, Message
from cri_proxy.recorder.bodies import BodyMemo
from cri_proxy.recorder.prepared import CALL_OVERHEAD_BYTES, PreparedCall
from tests.helpers.calls import make_call


def test_size_is_the_message_bytes_plus_the_overhead() -> None:
    call = make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})
    assert PreparedCall.of(call).size == CALL_OVERHEAD_BYTES + call.request_bytes + call.response_bytes


def test_json_comes_from_the_decoder_by_direction() -> None:
    item = PreparedCall.of(make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}))
    assert item.first(Direction.REQUEST) is None  # no decoder: no JSON is stored
    item.decoder = JsonDecoder()
    assert item.first(Direction.REQUEST) == {"version": "0.1.0"}
    assert item.first(Direction.RESPONSE) == {"runtime_name": "containerd"}
    assert item.decoded(0) is item.decoded(0)  # decoded once


def test_restart_forgets_what_was_made_from_the_old_messages() -> None:
    call = make_call("Version", {"version": "0.1.0"}, {})
    item = PreparedCall.of(call)
    item.decoder = JsonDecoder()
    before = item.sha(0)
    assert before == hashlib.sha256(call.messages[0].data).hexdigest()
    assert item.decoded(0) == {"version": "0.1.0"}
    call.messages[0] = Message(Direction.REQUEST, 0, 0.0, b"")
    item.restart()
    assert item.sha(0) == hashlib.sha256(b"").hexdigest() != before
    assert item.decoded(0) == {}


def test_an_equal_body_is_hashed_once_and_held_once() -> None:
    """With the decode peer's memo, the next call's equal body takes the sha256 and the very
    bytes of the one before: no second hash, no second copy."""
    memo: BodyMemo[str] = BodyMemo()
    first = PreparedCall.of(make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}))
    second = PreparedCall.of(make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}))
    first.shas = second.shas = memo
    assert second.call.messages[0].data is not first.call.messages[0].data
    assert first.sha(0) == second.sha(0) == hashlib.sha256(first.call.messages[0].data).hexdigest()
    assert second.call.messages[0].data is first.call.messages[0].data
    assert (memo.hits, memo.misses) == (1, 1)
    other = PreparedCall.of(make_call("Version", {"version": "0.2.0"}, {}))
    other.shas = memo
    assert other.sha(0) == hashlib.sha256(other.call.messages[0].data).hexdigest() != first.sha(0)
