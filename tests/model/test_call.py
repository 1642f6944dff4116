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


def test_state_round_trips_losslessly_through_json_and_pickle() -> None:
    import json
    import pickle

    rec = call(duration_s=0.25, upstream="unix:///run/containerd/containerd.sock", peer_pid=42, peer_uid=0,
               client_api="v1", upstream_api="v1alpha2", request_metadata=[("user-agent", "kubelet")],
               response_metadata=[("content-type", "application/grpc")], trailers=[("grpc-status", "5")],
               status_code=5, status_message="not found", outcome=Outcome.CANCELLED, notes=["translated"])
    rec.add_message(Message(Direction.REQUEST, 0, 0.0, b"\x00\xff"))
    rec.add_message(Message(Direction.RESPONSE, 0, 0.2, b"zz", compressed=True))
    state = rec.to_state()
    assert RecordedCall.from_state(state) == rec
    assert RecordedCall.from_state(pickle.loads(pickle.dumps(state))) == rec
    as_json = json.loads(json.dumps({**state, "messages": [{**m, "data": m["data"].hex()} for m in state["messages"]]}))
    as_json["messages"] = [{**m, "data": bytes.fromhex(m["data"])} for m in as_json["messages"]]
    assert RecordedCall.from_state(as_json) == rec  # only the bytes need an encoding of their own


def test_state_of_an_older_format_takes_defaults_and_unknown_keys_are_refused() -> None:
    old = {"conn_id": 1, "stream_id": 3, "started_at": 1.0, "path": "/runtime.v1.RuntimeService/Version"}
    assert RecordedCall.from_state(old) == call("/runtime.v1.RuntimeService/Version")
    import pytest

    with pytest.raises(ValueError, match="unknown colour"):
        RecordedCall.from_state({**old, "colour": "blue"})
