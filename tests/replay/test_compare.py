"""Id remapping in requests of both CRI versions, and the structural diff with its ignore globs."""

from __future__ import annotations

import json

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.replay.compare import Comparer
from cri_proxy.replay.pace import parse_pace
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


def test_the_diff_ignores_volatile_fields_and_list_order() -> None:
    old = {"containers": [{"id": "1", "created_at": "5", "state": "RUNNING"}, {"id": "2", "pid": "7"}],
           "stats": {"cpu": {"usage_core_nano_seconds": {"value": "9"}}}}
    new = {"containers": [{"id": "2", "pid": "8"}, {"id": "1", "created_at": "6", "state": "RUNNING"}],
           "stats": {"cpu": {"usage_core_nano_seconds": {"value": "10"}}}}
    assert Comparer().diff(old, new) == []
    new["containers"][1]["state"] = "EXITED"  # type: ignore[index]
    (diff,) = Comparer().diff(old, new)
    assert (diff.path, diff.recorded, diff.replayed) == ("containers[id=1].state", "RUNNING", "EXITED")
    assert Comparer(("containers.state",)).diff(old, new) == []
    assert Comparer(("containers[id=1].state",)).diff(old, new) == []
    assert Comparer(("containers[*].state",)).diff(old, new) == []
    assert Comparer(("containers[id=2].state",)).diff(old, new) != []
    assert Comparer(("containers[*].id",)).diff(old, new)[0].path == "containers[0].state"  # by position
    gone = Comparer().diff(old, {"containers": [{"id": "1", "state": "EXITED"}], "stats": new["stats"]})
    assert [(d.path, d.replayed) for d in gone] == [("containers[id=1].state", "EXITED"), ("containers[id=2]", None)]
    assert len(Comparer(defaults=False).diff(old, new)) == 4


def test_pace_values() -> None:
    assert parse_pace("fast") is None and parse_pace("original") == 1.0 and parse_pace("x2.5") == 2.5
    for bad in ("x0", "xx", "2", "slow"):
        with pytest.raises(ConfigError):
            parse_pace(bad)


PATHS = ["containers[id=1].state", "containers[0].created_at", "status.pid", "stats[3].cpu.timestamp",
         "url", "images[0].id", "images[id=sha256:ab].repo_tags[1]", "info.runtime.pids", "a.b.c", "",
         "status.labels.io.kubernetes.pod.name", "items[12].memory.rss_bytes.value"]
GLOBS = [(), ("containers.state",), ("containers[*].state",), ("images[0].id", "*repo_tags*"),
         ("status.labels.*",), ("a?b.c",), ("[ab].b.c",), ("*",)]


@pytest.mark.parametrize("extra", GLOBS)
@pytest.mark.parametrize("defaults", [True, False])
def test_ignored_agrees_with_matching_glob_by_glob(extra: tuple[str, ...], defaults: bool) -> None:
    """The one compiled pattern (and its memo) answers as fnmatchcase does, one glob at a time,
    against the path with and without its list positions."""
    import fnmatch
    import re

    comparer = Comparer(extra, defaults=defaults)
    for _ in range(2):  # the second pass answers from the memo
        for path in PATHS:
            bare = re.sub(r"\[(\d+|id=[^\]]*)\]", "", path)
            expected = any(fnmatch.fnmatchcase(p, g) for g in comparer.ignore for p in (path, bare))
            assert comparer.ignored(path) is expected, (path, comparer.ignore)
    assert Comparer(("containers[*].state",), defaults=False).ignored("containers[7].state")
    assert not Comparer(("containers[0].state",), defaults=False).ignored("containers[1].state")


def test_verbose_info_json_is_compared_without_its_pids_ids_and_times() -> None:
    recorded = {"pid": 1234, "sandboxID": "a" * 64, "createdAt": "2026-11-23T10:00:00.123Z", "processStatus": "running",
                "config": {"metadata": {"name": "redis"}, "started_at": 5},
                "runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": "/proc/1234/ns/net"}]}}}
    replayed = dict(recorded, pid=4321, sandboxID="b" * 64, createdAt="2026-12-01T13:00:00Z",
                    config={"metadata": {"name": "redis"}, "started_at": 9},
                    runtimeSpec={"linux": {"namespaces": [{"type": "network", "path": "/proc/4321/ns/net"}]}})
    old = {"status": {"id": "c1"}, "info": {"info": json.dumps(recorded)}}
    new = {"status": {"id": "c1"}, "info": {"info": json.dumps(replayed)}}
    assert Comparer().diff(old, new) == []
    changed = {"status": {"id": "c1"}, "info": {"info": json.dumps(dict(replayed, processStatus="exited"))}}
    assert [d.path for d in Comparer().diff(old, changed)] == ["info.info.processStatus"]
    # outside such a document an id is compared as ever, and a string that is not JSON too
    assert [d.path for d in Comparer().diff({"status": {"id": "c1"}}, {"status": {"id": "c2"}})] == ["status.id"]
    assert [d.path for d in Comparer().diff({"info": {"x": "{not json"}}, {"info": {"x": "{nor this"}})] == ["info.x"]


def test_a_value_the_recording_redacted_matches_whatever_is_answered() -> None:
    old = {"env": ["PATH=[redacted]", "HOME=/root"], "password": "[redacted]"}
    new = {"env": ["PATH=/bin", "HOME=/home"], "password": "hunter2"}
    assert [d.path for d in Comparer().diff(old, new)] == ["env[1]"]
    assert [d.path for d in Comparer().diff({"env": ["PATH=[redacted]"]}, {"env": ["HOME=/bin"]})] == ["env[0]"]
