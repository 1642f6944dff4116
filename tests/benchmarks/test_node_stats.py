"""The node model of benchmarks/storage.py's stats replies (benchmarks/node_stats.py): figures
move as a node's do, so the bytes a day it measures are a node's, not a random draw's."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from itertools import pairwise
from types import ModuleType

from cri_proxy.pb.runtime.v1 import api_pb2 as cri

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # node_calls.py imports node_stats as a sibling
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(name, module)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_counters_grow_read_times_follow_each_other_and_idle_memory_mostly_stays() -> None:
    node = _module("node_calls").Node(20)
    first, later = (cri.ListContainerStatsResponse.FromString(node.container_stats(s)).stats for s in (0, 10))
    times = [s.cpu.timestamp for s in later]
    assert len(set(times)) == len(times)  # read one after the other
    assert sum(b < a for a, b in pairwise(times)) <= 1  # in a rotation of the reply's order
    assert all(s.memory.timestamp == s.cpu.timestamp == s.swap.timestamp for s in later)
    before = {s.attributes.id: s for s in first}
    assert [s.attributes.id for s in later] != list(before)  # the runtime's map: another order each time
    pairs = [(before[s.attributes.id], s) for s in later]
    assert all(9.8e9 < b.cpu.timestamp - a.cpu.timestamp < 10.2e9 for a, b in pairs)
    assert all(b.cpu.usage_core_nano_seconds.value > a.cpu.usage_core_nano_seconds.value for a, b in pairs)
    same = sum(a.memory.working_set_bytes.value == b.memory.working_set_bytes.value for a, b in pairs)
    assert len(first) // 3 < same < len(first)  # most containers are idle, some are not
    assert all(s.memory.working_set_bytes.value % 4096 == 0 for s in later)


def test_pod_stats_carry_each_pods_containers_as_containerd_gives_them() -> None:
    node = _module("node_calls").Node(20)
    node.container_stats(0)
    pods = cri.ListPodSandboxStatsResponse.FromString(node.pod_stats(0)).stats
    assert sorted(len(p.linux.containers) for p in pods) == sorted(2 + (p % 2 == 0) for p in range(20))
    for pod in pods:
        assert not pod.linux.network.timestamp and pod.linux.network.default_interface.name == "eth0"
        assert pod.linux.process.timestamp == pod.linux.cpu.timestamp == pod.linux.memory.timestamp
        assert all(c.cpu.timestamp > pod.linux.cpu.timestamp for c in pod.linux.containers)  # read after the pod


def test_the_random_model_is_still_there_and_moves_every_figure() -> None:
    node = _module("node_calls").Node(20, stats="random")
    first, later = (cri.ListContainerStatsResponse.FromString(node.container_stats(s)).stats for s in (0, 10))
    assert node.figures is None
    assert all(s.writable_layer.timestamp == later[0].writable_layer.timestamp for s in later)  # the older model
    moved = sum(a.memory.working_set_bytes.value != b.memory.working_set_bytes.value for a, b in zip(first, later, strict=True))
    assert moved > len(first) * 0.9
