"""cri_proxy/replay/remap.py: ids the target made replace the recorded ones in requests, and back in answers."""

from __future__ import annotations

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.replay.remap import IdMap

pytestmark = pytest.mark.timeout(10)
OLD_POD, NEW_POD, OLD_CTR, NEW_CTR = "a" * 64, "b" * 64, "c" * 64, "d" * 64


def id_map() -> IdMap:
    ids = IdMap()
    ids.learn_from("/runtime.v1.RuntimeService/RunPodSandbox",
                   v1.RunPodSandboxResponse(pod_sandbox_id=OLD_POD).SerializeToString(),
                   v1.RunPodSandboxResponse(pod_sandbox_id=NEW_POD).SerializeToString())
    ids.learn(OLD_CTR, NEW_CTR)
    return ids


@pytest.mark.parametrize("pb, version", [(v1, "v1"), (v1alpha2, "v1alpha2")])
def test_requests_of_both_versions_get_the_new_ids(pb: object, version: str) -> None:
    ids = id_map()
    request = pb.ListContainersRequest(filter=pb.ContainerFilter(  # type: ignore[attr-defined]
        pod_sandbox_id=OLD_POD, id=OLD_CTR, label_selector={"pod": OLD_POD, "other": "x"}))
    path = f"/runtime.{version}.RuntimeService/ListContainers"
    rewritten = pb.ListContainersRequest.FromString(  # type: ignore[attr-defined]
        ids.rewrite_request(path, request.SerializeToString()))
    assert (rewritten.filter.pod_sandbox_id, rewritten.filter.id) == (NEW_POD, NEW_CTR)
    assert dict(rewritten.filter.label_selector) == {"pod": NEW_POD, "other": "x"}
    create = pb.CreateContainerRequest(pod_sandbox_id=OLD_POD)  # type: ignore[attr-defined]
    out = ids.rewrite_request(f"/runtime.{version}.RuntimeService/CreateContainer", create.SerializeToString())
    assert pb.CreateContainerRequest.FromString(out).pod_sandbox_id == NEW_POD  # type: ignore[attr-defined]
    untouched = pb.VersionRequest(version="0.1").SerializeToString()  # type: ignore[attr-defined]
    assert ids.rewrite_request(f"/runtime.{version}.RuntimeService/Version", untouched) == untouched


def test_answers_get_the_recorded_ids_back_even_inside_paths() -> None:
    doc = {"status": {"id": NEW_CTR, "log_path": f"/var/log/pods/{NEW_POD}/c/0.log"}}
    assert id_map().back_to_recorded(doc) == {"status": {"id": OLD_CTR, "log_path": f"/var/log/pods/{OLD_POD}/c/0.log"}}
