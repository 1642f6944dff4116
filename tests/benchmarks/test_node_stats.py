"""The node model of benchmarks/storage.py's stats replies (benchmarks/node_stats.py): figures
move as a node's do, so the bytes a day it measures are a node's, not a random draw's."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

from cri_proxy.pb.runtime.v1 import api_pb2 as cri

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _module(name: str) -> ModuleType:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # storage.py imports node_stats as a sibling
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
    node = _module("storage").Node(20)
    first, later = (cri.ListContainerStatsResponse.FromString(node.container_stats(s)).stats for s in (0, 10))
    times = [s.cpu.timestamp for s in later]
    assert times == sorted(times) and len(set(times)) == len(times)  # read one after the other
    assert all(s.memory.timestamp == s.cpu.timestamp == s.swap.timestamp for s in later)
    assert all(9.9e9 < b.cpu.timestamp - a.cpu.timestamp < 10.1e9 for a, b in zip(first, later, strict=True))
    assert all(b.cpu.usage_core_nano_seconds.value > a.cpu.usage_core_nano_seconds.value
               for a, b in zip(first, later, strict=True))
    same = sum(a.memory.working_set_bytes.value == b.memory.working_set_bytes.value for a, b in zip(first, later, strict=True))
    assert len(first) // 3 < same < len(first)  # most containers are idle, some are not
    assert all(s.memory.working_set_bytes.value % 4096 == 0 for s in later)


def test_the_random_model_is_still_there_and_moves_every_figure() -> None:
    node = _module("storage").Node(20, stats="random")
    first, later = (cri.ListContainerStatsResponse.FromString(node.container_stats(s)).stats for s in (0, 10))
    assert node.figures is None
    assert all(s.writable_layer.timestamp == later[0].writable_layer.timestamp for s in later)  # the older model
    moved = sum(a.memory.working_set_bytes.value != b.memory.working_set_bytes.value for a, b in zip(first, later, strict=True))
    assert moved > len(first) * 0.9
