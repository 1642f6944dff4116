"""The tap's calls (recorder.tapcalls): opened from header blocks, capped, ended once, and
what a lost HPACK state or a raising sink does to them."""

from __future__ import annotations

import json
import pathlib

import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.model.call import Direction, Outcome
from tests.helpers.calls import rows
from tests.helpers.tapwire import RaisingSink, Wire, messages, prefixed

pytestmark = pytest.mark.timeout(20)


def test_garbage_request_headers_make_this_and_later_calls_unparsed(
        wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    wire.client(HeadersFrame(1, data=b"\xff\xff\xff\xff\xff\xff", flags=["END_HEADERS"]),
                DataFrame(1, prefixed(b"lost"), flags=["END_STREAM"]))
    wire.server(*wire.answer(1))
    wire.unary(3)
    wire.unary(5)
    first, *later = wire.sink.calls
    assert [c.outcome for c in wire.sink.calls] == [Outcome.UNPARSED] * 3
    assert all(c.path == "" for c in wire.sink.calls)
    assert messages(first, Direction.REQUEST) == [b"lost"]  # what could be read still is
    assert any("undecodable header block on stream 1" in n for n in first.notes)
    assert all(any("path unknown" in n for n in c.notes) and "ended as completed" in c.notes for c in later)
    warnings = [r for r in caplog.records if r.name == "cri_proxy.recorder.tapcalls" and r.levelname == "WARNING"]
    assert len(warnings) == 1 and "conn 7" in warnings[0].getMessage()


def test_garbage_response_headers_keep_paths_but_mark_calls_unparsed(wire: Wire) -> None:
    wire.client(wire.request(1, "/a/One"), wire.request(3, "/a/Two"))
    wire.server(HeadersFrame(1, data=b"\x7f\xff\xff\xff\xff\xff", flags=["END_HEADERS", "END_STREAM"]))
    wire.server(*wire.answer(3))
    wire.unary(5)
    assert [(c.path, c.outcome) for c in wire.sink.calls] == [
        ("/a/One", Outcome.UNPARSED), ("/a/Two", Outcome.UNPARSED),
        ("/runtime.v1.RuntimeService/Version", Outcome.UNPARSED)]
    assert all(c.status_code is None for c in wire.sink.calls)


def test_upstream_change_applies_to_open_and_later_calls(wire: Wire) -> None:
    wire.client(wire.request(1))
    wire.tap.upstream_changed("unix:///image.sock")
    wire.server(*wire.answer(1, trailers_only=True))
    wire.unary(3)
    assert [c.upstream for c in wire.sink.calls] == ["unix:///image.sock"] * 2


def test_a_raising_sink_never_reaches_the_relay(caplog: pytest.LogCaptureFixture) -> None:
    sink = RaisingSink()
    wire = Wire(sink=sink)
    wire.unary(1)
    wire.unary(3)
    wire.client(wire.request(5))
    wire.tap.closed(None)
    assert sink.submitted == 3
    errors = [r for r in caplog.records if r.name == "cri_proxy.recorder.tapcalls" and r.levelname == "ERROR"]
    assert len(errors) == 1 and "conn 7: call 1 /runtime.v1.RuntimeService/Version" in errors[0].getMessage()


def test_a_header_bomb_is_stored_cut_to_size(tmp_path: pathlib.Path) -> None:
    """One 4,000-byte table entry referenced 4,000 times: 4 KB on the wire, 16 MB decoded."""
    from cri_proxy.recorder.recorder import Recorder
    from cri_proxy.recorder.headers import MAX_METADATA_BYTES

    path = tmp_path / "calls.db"
    recorder = Recorder(path)
    recorder.start()
    wire = Wire(sink=recorder)
    head = [(":method", "POST"), (":scheme", "http"), (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", "localhost"), ("content-type", "application/grpc")]
    block = wire.client_enc.encode([*head, ("x-bomb", "b" * 3990)])  # index 62 is now the bomb
    bomb = HeadersFrame(1, data=block + b"\xbe" * 3999, flags=["END_HEADERS"])
    assert len(bomb.data) < 9000
    wire.client(bomb, DataFrame(1, prefixed(b""), flags=["END_STREAM"]))
    tail = wire.server_enc.encode([(":status", "200"), ("x-t", "t" * 3990)]) + b"\xbe" * 3999 + \
        wire.server_enc.encode([("grpc-status", "0")])
    wire.server(HeadersFrame(1, data=tail, flags=["END_HEADERS", "END_STREAM"]))
    wire.unary(3)
    recorder.close()
    got = rows(path, "SELECT stream_id, path, status_code, length(request_metadata), length(trailers), notes "
                     "FROM calls ORDER BY stream_id")
    assert [r[:3] for r in got] == [(1, "/runtime.v1.RuntimeService/Version", 0),
                                    (3, "/runtime.v1.RuntimeService/Version", 0)]
    assert MAX_METADATA_BYTES // 2 < got[0][3] < MAX_METADATA_BYTES * 1.1 and got[0][4] < MAX_METADATA_BYTES * 1.1
    notes = json.loads(got[0][5])
    field = len("x-bomb") + 3990 + 32  # as HPACK sizes a field
    content_type = len("content-type") + len("application/grpc") + 32
    kept = (MAX_METADATA_BYTES - content_type) // field
    assert f"request metadata cut to its first {1 + kept} of 4001 fields " \
           f"({content_type + kept * field:,} of {content_type + 4000 * field:,} bytes)" in notes
    assert any(n.startswith("trailers cut to its first 16 of 4001 fields") for n in notes)
    assert got[1][5] is None  # the next call on the connection is whole
