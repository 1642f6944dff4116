"""cri_proxy/recorder/headers.py: header text, metadata, its cap, and the status trailers carry."""

from __future__ import annotations

from cri_proxy.model.call import RecordedCall
from cri_proxy.recorder.headers import (
    MAX_METADATA_ENTRIES,
    cap_metadata,
    header_text,
    read_status,
    set_status,
    split_headers,
)


def new_call() -> RecordedCall:
    return RecordedCall(conn_id=1, stream_id=1, started_at=0.0, path="/runtime.v1.RuntimeService/Version")


def test_header_text() -> None:
    assert header_text(b"x-trace-bin", None) == "x-trace-bin"
    assert header_text(b"\x00\x01\xff", "x-trace-bin") == "Af8"  # true binary: base64, unpadded
    assert header_text("café".encode(), "x-a") == "café"
    assert header_text(b"\xff", "x-a") == "\\xff"


def test_split_headers_and_read_status() -> None:
    pseudo, metadata, size = split_headers([(":status", "200"), ("grpc-status", "5"), ("grpc-message", "no%20pod")])
    assert pseudo == {":status": "200"} and size == len("grpc-status5grpc-messageno%20pod")
    call = new_call()
    set_status(call, read_status(metadata))
    assert (call.status_code, call.status_message) == (5, "no pod")
    set_status(call, read_status([("grpc-status", "five")]))
    assert call.notes == ["unreadable grpc-status 'five'"]


def test_cap_metadata_keeps_the_first_fields_and_says_so() -> None:
    few = [("x-a", "1")]
    assert cap_metadata(few, "request metadata", 4) == (few, None)
    many = [(f"x-{i}", "v") for i in range(MAX_METADATA_ENTRIES + 4)]
    kept, note = cap_metadata(many, "request metadata", sum(len(n) + len(v) for n, v in many))
    assert kept == many[:MAX_METADATA_ENTRIES]
    assert note is not None and note.startswith(f"request metadata cut to its first {MAX_METADATA_ENTRIES} of "
                                                f"{len(many)} fields")
