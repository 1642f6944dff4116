"""cri_proxy/replay/answers.py: choosing the recorded answer for a request, from a real recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.replay.answers import Ambiguous, Answers, NoAnswer, idents, method_key
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.reader import load_calls
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record

pytestmark = pytest.mark.timeout(30)
CTR_A, CTR_B = "a" * 64, "b" * 64


def status_call(ctr: str, state: str, at: float, stream_id: int) -> RecordedCall:
    return make_call("ContainerStatus", {"container_id": ctr},
                     {"status": {"id": ctr, "state": state}}, started=at, stream_id=stream_id)


@pytest.fixture
def answers(tmp_path: Path) -> Answers:
    path = tmp_path / "calls.db"
    record(path, [status_call(CTR_A, "CONTAINER_CREATED", T0, 1), status_call(CTR_A, "CONTAINER_RUNNING", T0 + 5, 3),
                  status_call(CTR_B, "CONTAINER_EXITED", T0 + 6, 5)])
    conn = open_readonly(path)
    try:
        return Answers(load_calls(conn, Selection()))
    finally:
        conn.close()


def request(ctr: str, pb: object = v1, **extra: object) -> bytes:
    return pb.ContainerStatusRequest(container_id=ctr, **extra).SerializeToString()  # type: ignore[attr-defined]


def state(answers: Answers, path: str, data: bytes, at_s: float) -> tuple[str, str]:
    entry, how = answers.pick(path, data, at_s)
    reply = v1.ContainerStatusResponse.FromString(entry.call.responses[0])
    return v1.ContainerState.Name(reply.status.state), how


def test_the_timeline_decides_among_equal_requests(answers: Answers) -> None:
    path = "/runtime.v1.RuntimeService/ContainerStatus"
    assert state(answers, path, request(CTR_A), 0.0) == ("CONTAINER_CREATED", "bytes")
    assert state(answers, path, request(CTR_A), 4.9) == ("CONTAINER_CREATED", "bytes")
    assert state(answers, path, request(CTR_A), 5.0) == ("CONTAINER_RUNNING", "bytes")
    assert state(answers, path, request(CTR_B), 0.0) == ("CONTAINER_EXITED", "bytes")  # none earlier: the first


def test_either_version_and_the_closest_request(answers: Answers) -> None:
    assert answers.knows("/runtime.v1alpha2.RuntimeService/ContainerStatus")
    assert not answers.knows("/runtime.v1.RuntimeService/ListContainers")
    old = "/runtime.v1alpha2.RuntimeService/ContainerStatus"
    assert state(answers, old, request(CTR_B, v1alpha2), 9.0) == ("CONTAINER_EXITED", "bytes")
    assert state(answers, old, request(CTR_B, v1alpha2, verbose=True), 9.0) == ("CONTAINER_EXITED", "closest")


def test_an_id_never_recorded_has_no_answer(answers: Answers) -> None:
    with pytest.raises(NoAnswer, match="no recorded RuntimeService/ContainerStatus names " + "c" * 64):
        answers.pick("/runtime.v1.RuntimeService/ContainerStatus", request("c" * 64), 0.0)


def test_method_key_and_idents() -> None:
    assert method_key("/runtime.v1alpha2.ImageService/ListImages") == "ImageService/ListImages"
    assert idents({"filter": {"pod_sandbox_id": "p", "label_selector": {"app": "x"}},
                   "image": {"image": "busybox"}, "ids": [{"id": "c"}]}) == {"p", "busybox", "c"}


def test_a_unique_id_prefix_stands_for_its_id_and_an_ambiguous_one_is_containerds_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    ab, ac = "ab" + "1" * 62, "ac" + "2" * 62
    record(path, [status_call(ab, "CONTAINER_RUNNING", T0, 1), status_call(ac, "CONTAINER_EXITED", T0 + 1, 3),
                  make_call("PodSandboxStatus", {"pod_sandbox_id": "p" * 64}, {"status": {"id": "p" * 64}},
                            started=T0 + 2, stream_id=5),
                  make_call("ListContainers", {"filter": {"pod_sandbox_id": "p" * 64}}, {}, started=T0 + 3, stream_id=7)])
    conn = open_readonly(path)
    try:
        answers = Answers(load_calls(conn, Selection()))
    finally:
        conn.close()
    status = "/runtime.v1.RuntimeService/ContainerStatus"
    assert state(answers, status, request("ab1"), 9.0) == ("CONTAINER_RUNNING", "bytes")  # the recorded bytes again
    assert state(answers, status, request("ac", verbose=True), 9.0) == ("CONTAINER_EXITED", "closest")
    assert answers.expand_prefixes(status, request(ab)) == request(ab)  # a full id is left alone
    with pytest.raises(Ambiguous) as raised:
        answers.pick(status, request("a"), 0.0)
    assert str(raised.value) == ('an error occurred when try to find container "a": '
                                 "Multiple IDs found with provided prefix: a")  # fmt: skip
    with pytest.raises(NoAnswer):  # the prefix of no recorded id: as any unknown id
        answers.pick(status, request("ff"), 0.0)
    pod_path = "/runtime.v1.RuntimeService/PodSandboxStatus"
    entry, how = answers.pick(pod_path, v1.PodSandboxStatusRequest(pod_sandbox_id="ppp").SerializeToString(), 0.0)
    assert (entry.call.method, how) == ("PodSandboxStatus", "bytes")
    listed = v1.ListContainersRequest(filter=v1.ContainerFilter(pod_sandbox_id="pp")).SerializeToString()
    assert answers.pick("/runtime.v1.RuntimeService/ListContainers", listed, 0.0)[1] == "bytes"
