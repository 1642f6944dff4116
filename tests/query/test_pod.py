"""`cri-proxy pod`: one pod's calls as steps and summaries, found by name or by (a prefix of)
a sandbox or container id, on a recording made through the proxy, on hand-made restarts and
ambiguous prefixes, and on a real containerd lifecycle (CI runs containerd as root)."""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from typing import Any

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers import containerd_harness as harness
from tests.helpers.calls import POD, make_call, record
from tests.helpers.cli import one_error_line, run_cli
from tests.helpers.containerd_fixtures import (  # noqa: F401  (fixtures are found by name)
    ProxyRun,
    container_config,
    pod_config,
    proxy,
)
from tests.helpers.recordings import Recorded

pytestmark = pytest.mark.timeout(60)
LIFECYCLE = ["RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
             "StopPodSandbox", "RemovePodSandbox"]  # fmt: skip


def pod_json(db: pathlib.Path, target: str) -> dict[str, Any]:
    result = run_cli("pod", target, "--db", str(db), "--format", "json")
    assert result.returncode == 0, result.stderr
    got: dict[str, Any] = json.loads(result.stdout)
    return got


def assert_adds_up(story: dict[str, Any]) -> None:
    """Gaps and durations of the steps add up to the pod's wall time, and the steps are in order."""
    steps = story["steps"]
    total = sum(s["gap_ms"] + s["duration_ms"] for s in steps)
    assert total == pytest.approx(story["wall_ms"], abs=0.01)
    assert story["wall_ms"] == pytest.approx(steps[-1]["offset_ms"] + steps[-1]["duration_ms"], abs=0.01)
    offsets = [s["offset_ms"] for s in steps]
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_the_story_of_a_pod_recorded_through_the_proxy(recording_master: Recorded) -> None:
    story = pod_json(recording_master.db, "shop/web")
    assert [s["method"] for s in story["steps"]] == LIFECYCLE
    assert_adds_up(story)
    assert {s["container"] for s in story["steps"] if s["container_id"]} == {"redis"}
    polls = {(s["method"], s["container"]): s for s in story["summaries"]}
    assert polls[("ExecSync", "redis")]["exit_codes"] == {"0": 1}
    assert polls[("ContainerStatus", "redis")]["calls"] == 1
    assert polls[("PodSandboxStatus", None)]["calls"] == 1
    # by a prefix of its sandbox id, or of its container's id: the same pod
    sandbox = story["sandbox_ids"][0]
    container = next(iter(story["containers"]))
    for prefix in (sandbox[:8], container[:8]):
        assert pod_json(recording_master.db, prefix)["steps"] == story["steps"]


def test_the_waterfall_shows_each_step_with_a_bar(recording_master: Recorded) -> None:
    result = run_cli("pod", "shop/web", "--db", str(recording_master.db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pod shop/web: 7 steps in ")
    for method in LIFECYCLE:
        (line,) = [row for row in lines if f" {method}" in row and "×" not in row]
        assert "█" in line and " OK " in line
    assert any("ExecSync ×1 redis" in row and "exit=0×1" in row for row in lines)


def restarts(path: pathlib.Path) -> None:
    """A pod whose container is created twice (attempt 0, then 1), and a probe exiting 1."""
    t = time.time() - 30
    cfg = {"config": {"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}}}
    calls = [make_call("RunPodSandbox", cfg, {"pod_sandbox_id": "abc1" + "0" * 60}, started=t, duration_ms=100.0)]
    for attempt, cid in ((0, "c0" + "1" * 62), (1, "c1" + "2" * 62)):
        at = t + 1 + attempt * 5
        create = {"pod_sandbox_id": "abc1" + "0" * 60, "sandbox_config": POD,
                  "config": {"metadata": {"name": "app", "attempt": attempt}, "image": {"image": "nginx:1"}}}
        calls += [make_call("CreateContainer", create, {"container_id": cid}, started=at, duration_ms=20.0),
                  make_call("StartContainer", {"container_id": cid}, {}, started=at + 0.1, duration_ms=30.0),
                  make_call("ExecSync", {"container_id": cid, "cmd": ["check"]}, {"exit_code": attempt},
                            started=at + 1, duration_ms=5.0)]  # fmt: skip
    other = {"config": {"metadata": {"name": "db", "namespace": "shop", "uid": "u2"}}}
    calls.append(make_call("RunPodSandbox", other, {"pod_sandbox_id": "abc2" + "0" * 60}, started=t + 20))
    record(path, calls)


def test_restarts_show_their_attempt_numbers(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    restarts(path)
    story = pod_json(path, "shop/web")
    creates = [(s["container"], s["attempt"]) for s in story["steps"] if s["method"] == "CreateContainer"]
    assert creates == [("app", 0), ("app", 1)]
    assert_adds_up(story)
    probes = [s["exit_codes"] for s in story["summaries"] if s["method"] == "ExecSync"]
    assert probes == [{"0": 1}, {"1": 1}]  # one per container, in the order they ran
    table = run_cli("pod", "shop/web", "--db", str(path)).stdout
    assert "CreateContainer app (attempt 1)" in table


def test_an_ambiguous_prefix_lists_the_candidates(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    restarts(path)
    result = run_cli("pod", "abc", "--db", str(path))
    line = one_error_line(result)
    assert "'abc' is ambiguous: 2 candidates" in line
    assert "abc1" + "0" * 60 in line and "abc2" + "0" * 60 in line
    assert pod_json(path, "abc2")["sandbox_ids"] == ["abc2" + "0" * 60]  # longer: unique
    for missing in ("zzz", "shop/nobody"):
        assert "no pod" in one_error_line(run_cli("pod", missing, "--db", str(path)))


@pytest.mark.containerd
def test_a_containerd_lifecycle_lists_every_stage(containerd: harness.Containerd, proxy: ProxyRun) -> None:
    """A pod started, probed, stopped and removed through the proxy in front of containerd."""
    name = f"story-{uuid.uuid4().hex[:8]}"
    channel = grpc.insecure_channel(f"unix://{proxy.sock}", options=harness.CHANNEL_OPTIONS)
    try:
        rt = v1_grpc.RuntimeServiceStub(channel)
        config = pod_config(v1, containerd, name, name)
        pod = rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        ctr = rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod, config=container_config(v1),
                                                           sandbox_config=config), timeout=60).container_id
        rt.StartContainer(v1.StartContainerRequest(container_id=ctr), timeout=60)
        for cmd in (["true"], ["sh", "-c", "exit 3"]):
            rt.ExecSync(v1.ExecSyncRequest(container_id=ctr, cmd=cmd, timeout=10), timeout=30)
        rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr), timeout=30)
        rt.StopContainer(v1.StopContainerRequest(container_id=ctr, timeout=0), timeout=60)
        rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr), timeout=60)
        rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    finally:
        channel.close()
    proxy.finish()
    story = pod_json(proxy.db, f"cri-proxy-test/{name}")
    assert [s["method"] for s in story["steps"]] == LIFECYCLE
    assert all(s["status"] == "OK" for s in story["steps"])
    assert_adds_up(story)
    assert story["wall_ms"] >= sum(s["duration_ms"] for s in story["steps"])
    probes = [s for s in story["summaries"] if s["method"] == "ExecSync"]
    assert [(p["container"], p["exit_codes"], p["failures"]) for p in probes] == [("sleeper", {"0": 1, "3": 1}, 1)]


def test_the_demo_recording(tmp_path: pathlib.Path) -> None:
    """The newest golden recording is `cri-proxy demo --db`'s: its pod demo/web-0 from start to removal."""
    from tests.helpers.recordings import GOLDEN

    story = pod_json(GOLDEN[-1], "demo/web-0")
    assert [s["method"] for s in story["steps"]] == LIFECYCLE
    assert_adds_up(story)
    (probes,) = [s for s in story["summaries"] if s["method"] == "ExecSync"]
    assert probes["exit_codes"] == {"0": 1, "3": 1} and probes["failures"] == 1
