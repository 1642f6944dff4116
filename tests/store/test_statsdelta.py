"""cri_proxy/store/statsdelta.py: a reply whose entries repeat the keyframe's but for their
numbers is kept as the numbers' residuals and rebuilt to the exact bytes, whatever moved:
numbers, varint lengths, strings, entries added, dropped or reordered."""

from __future__ import annotations

import hashlib
import random

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as cri
from cri_proxy.store import statsdelta

T0 = 1_800_000_000_000_000_000


def _stats(ids: list[int], second: int, rng: random.Random, cpu: dict[int, int], renamed: int = -1) -> bytes:
    """A ListContainerStatsResponse whose counters grow and whose read times advance."""
    stats = []
    for n, i in enumerate(ids):
        cpu[i] = cpu.get(i, 10**11) + rng.randrange(10**6, 10**9)
        at = T0 + second * 10**9 + n * 50_000 + rng.randrange(10_000)
        stats.append(cri.ContainerStats(
            attributes=cri.ContainerAttributes(id=hashlib.sha256(b"%d" % i).hexdigest(), metadata=cri.ContainerMetadata(name=f"{'renamed' if i == renamed else 'app'}-{i}"),
                                               labels={"io.kubernetes.pod.name": f"pod-{i}"}),
            cpu=cri.CpuUsage(timestamp=at, usage_core_nano_seconds=cri.UInt64Value(value=cpu[i]),
                             usage_nano_cores=cri.UInt64Value(value=rng.randrange(10**5, 10**7))),
            memory=cri.MemoryUsage(timestamp=at, working_set_bytes=cri.UInt64Value(value=4096 * rng.randrange(1000, 1100)))))
    return cri.ListContainerStatsResponse(stats=stats).SerializeToString()


def test_a_later_reply_is_rebuilt_exactly_from_its_numbers_residuals() -> None:
    rng, cpu = random.Random(1), {}
    keyframe = _stats(list(range(40)), 0, rng, cpu)
    body = _stats(list(range(40)), 60, rng, cpu)
    frame = statsdelta.Keyframe(keyframe)
    content = frame.encode(body)
    assert content is not None and len(content) < len(body) // 4
    assert frame.decode(content) == body
    assert statsdelta.Keyframe(keyframe).decode(content) == body  # a reader parses the keyframe on its own


def test_entries_added_dropped_reordered_renamed_or_resized_are_rebuilt_exactly() -> None:
    rng, cpu = random.Random(2), {}
    keyframe = _stats(list(range(30)), 0, rng, cpu)
    frame = statsdelta.Keyframe(keyframe)
    cpu[5] = 2**40  # its counter's varint is longer than the keyframe's: aligned field by field
    ids = [1, 0, 2, 3, 5, *range(7, 30), 99]  # 0 and 1 swapped, 4 and 6 gone, 99 new
    for body in (_stats(ids, 10, rng, cpu), _stats(ids, 20, rng, cpu, renamed=8)):
        content = frame.encode(body)
        assert content is not None
        assert frame.decode(content) == body
    assert frame.encode(_stats(list(range(30)), 30, rng, cpu, renamed=-2)) is not None
    assert frame.encode(b"".join(_stats([i], 40, rng, cpu, renamed=i) for i in range(30))) is None  # all renamed


def test_a_body_that_is_not_a_message_or_shares_no_entry_gets_no_stats_delta() -> None:
    rng, cpu = random.Random(3), {}
    frame = statsdelta.Keyframe(_stats(list(range(10)), 0, rng, cpu))
    assert frame.encode(b"\x0a\xff\xff\xff\x0f") is None  # a length past the end
    assert frame.encode(b"\x07") is None  # wire type 7 does not exist
    assert frame.encode(_stats(list(range(100, 110)), 10, rng, cpu)) is None


def test_a_keyframe_that_is_not_a_message_aligns_nothing() -> None:
    frame = statsdelta.Keyframe(bytes(random.Random(4).randrange(256) for _ in range(5000)))
    assert frame.encode(_stats([1, 2], 0, random.Random(5), {})) is None


def test_a_damaged_delta_fails_instead_of_giving_other_bytes() -> None:
    rng, cpu = random.Random(6), {}
    frame = statsdelta.Keyframe(_stats(list(range(20)), 0, rng, cpu))
    content = frame.encode(_stats(list(range(20)), 10, rng, cpu))
    assert content is not None
    with pytest.raises((ValueError, IndexError)):
        frame.decode(content[:-1] if content[-1:] else content + b"x")
    with pytest.raises((ValueError, IndexError)):
        frame.decode(content[:3])


def _pods(second: int, grown: set[int]) -> bytes:
    """A ListPodSandboxStatsResponse as containerd gives it: each pod's cgroup and its
    containers' stats inside it. The containers of the pods in `grown` have a counter past
    2^35, its varint a byte longer than before."""
    stats = []
    for p in range(20):
        containers = [cri.ContainerStats(
            attributes=cri.ContainerAttributes(id=hashlib.sha256(b"%d/%d" % (p, k)).hexdigest()),
            cpu=cri.CpuUsage(timestamp=T0 + second * 10**9 + (p * 3 + k) * 1_000_123,
                             usage_core_nano_seconds=cri.UInt64Value(value=(2**35 if p in grown else 2**30) + second * 7_919)))
            for k in range(3)]
        stats.append(cri.PodSandboxStats(
            attributes=cri.PodSandboxAttributes(id=hashlib.sha256(b"pod%d" % p).hexdigest(),
                                                metadata=cri.PodSandboxMetadata(name=f"pod-{p}", uid=f"uid-{p}")),
            linux=cri.LinuxPodSandboxStats(cpu=cri.CpuUsage(timestamp=T0 + second * 10**9 + p * 3_000_000),
                                           containers=containers)))
    return cri.ListPodSandboxStatsResponse(stats=stats).SerializeToString()


def test_a_field_that_does_not_align_is_split_down_to_the_one_that_changed() -> None:
    """A pod one of whose containers' varints grew is aligned field by field, its linux field
    and containers too, so only the grown varints' fields are kept as bytes, not the pods'
    whole linux fields; the numbers of every pod share columns however the pods differ."""
    keyframe = _pods(0, set())
    body = _pods(10, set(range(0, 20, 2)))
    frame = statsdelta.Keyframe(keyframe)
    content = frame.encode(body)
    assert content is not None
    assert statsdelta.Keyframe(keyframe).decode(content) == body
    linux = sum(len(stats.linux.SerializeToString()) for stats in cri.ListPodSandboxStatsResponse.FromString(body).stats)
    assert len(content) < linux // 4  # the pods' linux fields kept whole: more than half of them
