"""Plausible resource numbers for the fake runtime's stats RPCs.

Each container gets a CPU rate and a memory size derived from its id, so the numbers are
deterministic for a given container, and the cumulative counters (CPU time, network bytes)
grow with the time it has been running, as a real cgroup's would.
"""

from __future__ import annotations

import time

from cri_proxy.fakeruntime.config import STATS_PADDING_ANNOTATION
from cri_proxy.fakeruntime.state import Container, Pod, RuntimeState
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

_MIB = 1024 * 1024


def _seed(obj_id: str) -> int:
    return int(obj_id[:8], 16)


def _u64(value: int) -> v1.UInt64Value:
    return v1.UInt64Value(value=max(0, value))


def cpu_usage(obj_id: str, since_ns: int, now: int) -> v1.CpuUsage:
    millicores = 5 + _seed(obj_id) % 200
    elapsed = max(0, now - since_ns)
    return v1.CpuUsage(
        timestamp=now,
        usage_core_nano_seconds=_u64(elapsed * millicores // 1000),
        usage_nano_cores=_u64(millicores * 1_000_000),
    )


def memory_usage(obj_id: str, now: int) -> v1.MemoryUsage:
    working_set = (4 + _seed(obj_id) % 120) * _MIB
    return v1.MemoryUsage(
        timestamp=now,
        working_set_bytes=_u64(working_set),
        available_bytes=_u64(512 * _MIB - working_set),
        usage_bytes=_u64(working_set + 2 * _MIB),
        rss_bytes=_u64(working_set * 3 // 4),
        page_faults=_u64(1000 + _seed(obj_id) % 5000),
        major_page_faults=_u64(_seed(obj_id) % 7),
    )


def container_stats(ctr: Container, now: int | None = None) -> v1.ContainerStats:
    now = time.time_ns() if now is None else now
    cfg = ctr.config
    running = ctr.state == v1.CONTAINER_RUNNING
    start = ctr.started_at or ctr.created_at
    end = now if running else (ctr.finished_at or now)
    attributes = v1.ContainerAttributes(
        id=ctr.id, metadata=cfg.metadata, labels=cfg.labels, annotations=cfg.annotations
    )
    padding = cfg.annotations.get(STATS_PADDING_ANNOTATION, "")
    if padding.isdigit():
        attributes.annotations["fake.cri-proxy.io/padding"] = "x" * int(padding)
    return v1.ContainerStats(
        attributes=attributes,
        cpu=cpu_usage(ctr.id, start, end),
        memory=memory_usage(ctr.id, now),
        writable_layer=v1.FilesystemUsage(
            timestamp=now,
            fs_id=v1.FilesystemIdentifier(
                mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"
            ),
            used_bytes=_u64(4096 * (1 + _seed(ctr.id) % 64)),
            inodes_used=_u64(1 + _seed(ctr.id) % 32),
        ),
        swap=v1.SwapUsage(timestamp=now, swap_available_bytes=_u64(0), swap_usage_bytes=_u64(0)),
    )


def pod_stats(state: RuntimeState, pod: Pod, now: int | None = None) -> v1.PodSandboxStats:
    now = time.time_ns() if now is None else now
    ctrs = [c for c in state.pod_containers(pod.id) if c.state == v1.CONTAINER_RUNNING]
    per_ctr = [container_stats(c, now) for c in ctrs]
    cpu_total = sum(s.cpu.usage_core_nano_seconds.value for s in per_ctr)
    nano_cores = sum(s.cpu.usage_nano_cores.value for s in per_ctr)
    mem_total = sum(s.memory.working_set_bytes.value for s in per_ctr) + _MIB
    elapsed_s = max(0, now - pod.created_at) // 1_000_000_000
    rate = 100 + _seed(pod.id) % 5000  # bytes per second on eth0
    iface = v1.NetworkInterfaceUsage(
        name="eth0",
        rx_bytes=_u64(elapsed_s * rate),
        rx_errors=_u64(0),
        tx_bytes=_u64(elapsed_s * rate // 2),
        tx_errors=_u64(0),
    )
    md = pod.config.metadata
    return v1.PodSandboxStats(
        attributes=v1.PodSandboxAttributes(
            id=pod.id, metadata=md, labels=pod.config.labels, annotations=pod.config.annotations
        ),
        linux=v1.LinuxPodSandboxStats(
            cpu=v1.CpuUsage(
                timestamp=now,
                usage_core_nano_seconds=_u64(cpu_total),
                usage_nano_cores=_u64(nano_cores),
            ),
            memory=v1.MemoryUsage(
                timestamp=now,
                working_set_bytes=_u64(mem_total),
                usage_bytes=_u64(mem_total + _MIB),
            ),
            network=v1.NetworkUsage(timestamp=now, default_interface=iface, interfaces=[iface]),
            process=v1.ProcessUsage(timestamp=now, process_count=_u64(1 + len(ctrs))),
            containers=per_ctr,
        ),
    )


def image_fs_info(state: RuntimeState, now: int | None = None) -> v1.ImageFsInfoResponse:
    now = time.time_ns() if now is None else now
    used = state.images.total_size()
    fs = v1.FilesystemUsage(
        timestamp=now,
        fs_id=v1.FilesystemIdentifier(
            mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"
        ),
        used_bytes=_u64(used),
        inodes_used=_u64(len(state.images.list()) * 150),
    )
    return v1.ImageFsInfoResponse(image_filesystems=[fs])
