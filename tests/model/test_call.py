"""cri_proxy/model/call.py: a recorded call, its messages and the names read from its path."""

from __future__ import annotations

from cri_proxy.model.call import Direction, Message, Outcome, RecordedCall


def call(path: str = "/runtime.v1.RuntimeService/ListContainers", **kwargs: object) -> RecordedCall:
    return RecordedCall(conn_id=1, stream_id=3, started_at=1.0, path=path, **kwargs)  # type: ignore[arg-type]


def test_service_and_method_come_from_the_path() -> None:
    listed = call()
    assert (listed.service, listed.method) == ("runtime.v1.RuntimeService", "ListContainers")
    other = call("/containerd.services.version.v1.Version/Version")
    assert (other.service, other.method) == ("containerd.services.version.v1.Version", "Version")


def test_add_message_counts_bytes_per_direction() -> None:
    rec = call()
    rec.add_message(Message(Direction.REQUEST, 0, 0.0, b"abc"))
    rec.add_message(Message(Direction.RESPONSE, 0, 0.1, b"hello"))
    rec.add_message(Message(Direction.RESPONSE, 1, 0.2, b"!"))
    assert (rec.request_bytes, rec.response_bytes) == (3, 6)
    assert [m.index for m in rec.messages] == [0, 0, 1]


def test_failed_follows_the_one_rule() -> None:
    assert not call(status_code=0).failed
    assert call(status_code=5).failed
    assert call(status_code=None).failed  # completed without a grpc-status: the client saw an error
    assert call(status_code=None, outcome=Outcome.CONNECTION_CLOSED).failed
    assert call(status_code=None, outcome=Outcome.CANCELLED).failed


def test_each_call_has_its_own_lists() -> None:
    first, second = call(), call()
    first.notes.append("x")
    first.request_metadata.append(("a", "b"))
    assert second.notes == [] and second.request_metadata == []
