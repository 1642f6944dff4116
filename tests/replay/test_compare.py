"""cri_proxy/replay/compare.py: the structural diff with its ignore globs (id remapping: test_remap.py)."""

from __future__ import annotations

import json

import pytest

from cri_proxy.replay.compare import Comparer

pytestmark = pytest.mark.timeout(10)


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
