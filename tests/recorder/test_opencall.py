"""cri_proxy/recorder/opencall.py: a call the tap is reading (its messages are exercised
through the tap in test_tap.py and test_walk.py)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from cri_proxy.model.call import Direction, RecordedCall
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder import opencall
from cri_proxy.recorder.wire import LastBodies

pytestmark = pytest.mark.timeout(10)


def test_a_new_call_built_by_position_is_the_keyword_built_one() -> None:
    """new_call passes RecordedCall's fields by position (cheaper): FIELD_ORDER must be
    RecordedCall's; should a field be added or moved, update it there."""
    assert opencall.POSITIONAL, [f.name for f in fields(RecordedCall)]
    info = ConnectionInfo(7, 100, 200, "unix:///up.sock", 300, "kubelet", "/usr/bin/kubelet")
    built = opencall.new_call(info, 5, 12.5, "/runtime.v1.RuntimeService/Version", "unix:///up.sock", "v1",
                              [("a", "b")], ["a note"])
    assert built == RecordedCall(7, 5, 12.5, "/runtime.v1.RuntimeService/Version", upstream="unix:///up.sock",
                                 peer_pid=100, peer_uid=200, client_api="v1", upstream_api="v1",
                                 request_metadata=[("a", "b")], notes=["a note"], peer_gid=300, peer_name="kubelet",
                                 peer_exe="/usr/bin/kubelet")
    other = opencall.new_call(info, 7, 0.0, "", "u", None, [], [])
    assert other.response_metadata is not built.response_metadata and other.messages is not built.messages


def prefixed(data: bytes) -> bytes:
    return b"\x00" + len(data).to_bytes(4, "big") + data


def test_whole_messages_read_straight_then_a_reader_takes_over_with_the_next_index() -> None:
    call = opencall.OpenCall(RecordedCall(1, 1, 0.0, "/x.Y/Z"), 0.0)
    memo = LastBodies()
    call.messages(True, b"junk" + prefixed(b"abc"), 4, 12, 0.5, memo)
    assert call.request is None and call.sent == 1
    cut = prefixed(b"defgh")
    call.messages(True, cut, 0, 7, 0.6, memo)  # a message cut by the frame's end
    assert call.request is not None and call.request.count == 1
    call.messages(True, cut, 7, len(cut), 0.7, memo)
    call.messages(True, prefixed(b"i"), 0, 6, 0.8, memo)  # whole, but the reader reads on
    assert [(m.index, m.data, m.offset_s) for m in call.rec.messages] == [
        (0, b"abc", 0.5), (1, b"defgh", 0.7), (2, b"i", 0.8)]
    assert call.rec.request_bytes == 9 and call.request.count == 3 and call.sent == 1


def test_a_large_whole_message_equal_to_the_last_of_its_kind_is_that_body() -> None:
    memo = LastBodies()
    big = bytes(range(256)) * 40
    bodies = []
    for _ in range(3):
        call = opencall.OpenCall(RecordedCall(1, 1, 0.0, "/x.Y/List"), 0.0)
        frame = b"??" + prefixed(big)
        call.messages(False, frame, 2, len(frame), 0.1, memo)
        [message] = call.rec.messages
        assert message.direction is Direction.RESPONSE and message.data == big
        bodies.append(message.data)
    assert bodies[0] is bodies[1] is bodies[2]  # one copy held, whatever the calls waiting
    call = opencall.OpenCall(RecordedCall(1, 1, 0.0, "/x.Y/List"), 0.0)
    changed = big[:-1] + b"!"
    call.messages(False, prefixed(changed), 0, len(changed) + 5, 0.1, memo)
    assert call.rec.messages[0].data == changed and memo.get(("/x.Y/List", False)) is call.rec.messages[0].data


def test_counted_takes_one_whole_message_and_leaves_any_other_shape_to_messages() -> None:
    """The lean tap's request path: a frame of one whole message is counted (and not kept);
    a cut one, or any after a reader took over, is `messages`' to read."""
    call = opencall.OpenCall(RecordedCall(1, 1, 0.0, "/x.Y/Z"), 0.0)
    assert call.counted(b"junk" + prefixed(b"abc"), 4, 12)
    assert (call.sent, call.rec.request_bytes, call.rec.messages) == (1, 3, [])
    assert not call.counted(prefixed(b"abcdef"), 0, 8)  # cut: the rest comes in the next frame
    assert not call.counted(b"\x00\x00", 0, 2)
    call.messages(True, prefixed(b"abcdef"), 0, 8, 0.5, LastBodies())
    assert call.request is not None and not call.counted(prefixed(b"x"), 0, 6)
    assert call.sent == 1
