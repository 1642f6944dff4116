"""Realistic CRI request and reply bytes for the benchmark's backend and load generator.

The backend serves `<dir>/replies/<Method>.bin` and the load generator sends
`<dir>/requests/<Method>.bin`; both are real serialized runtime.v1 messages, so a
proxy that decodes what it relays does the work it would do on a real node.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cri_proxy.pb.runtime.v1 import api_pb2 as cri
from google.protobuf.message import Message

LIST_CONTAINERS = 100  # containers in the ListContainers reply (~25 KB without labels)
STATS_BYTES = 1_000_000  # the "stats of a big node" reply grows to this size
NOW_NS = 1_763_900_000_000_000_000


def _hex_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _labels(i: int) -> dict[str, str]:
    return {
        "io.kubernetes.container.name": f"app-{i}",
        "io.kubernetes.pod.name": f"web-{i // 2}-7d9c8b6f5d-x{i:04d}",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": str(hashlib.md5(str(i).encode()).hexdigest()),
    }


def _annotations(i: int) -> dict[str, str]:
    return {
        "io.kubernetes.container.hash": f"{i * 7919:08x}",
        "io.kubernetes.container.restartCount": "0",
        "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
    }


def _metadata(i: int) -> cri.ContainerMetadata:
    return cri.ContainerMetadata(name=f"app-{i}", attempt=0)


def container(i: int) -> cri.Container:
    """One running container as ListContainers reports it, labels left out (about 250 bytes)."""
    return cri.Container(
        id=_hex_id(f"c{i}"),
        pod_sandbox_id=_hex_id(f"p{i // 2}"),
        metadata=_metadata(i),
        image=cri.ImageSpec(image=f"registry.k8s.io/app-{i % 10}:1.27"),
        image_ref=f"sha256:{_hex_id(f'img{i % 10}')}",
        state=cri.CONTAINER_RUNNING,
        created_at=NOW_NS - i * 1_000_000_000,
    )


def _u64(value: int) -> cri.UInt64Value:
    return cri.UInt64Value(value=value)


def container_stats(i: int) -> cri.ContainerStats:
    """One container's CPU, memory, writable-layer and swap stats."""
    ts = NOW_NS
    return cri.ContainerStats(
        attributes=cri.ContainerAttributes(
            id=_hex_id(f"c{i}"), metadata=_metadata(i), labels=_labels(i), annotations=_annotations(i)
        ),
        cpu=cri.CpuUsage(
            timestamp=ts, usage_core_nano_seconds=_u64(9_000_000_000 + i), usage_nano_cores=_u64(12_345 + i)
        ),
        memory=cri.MemoryUsage(
            timestamp=ts,
            working_set_bytes=_u64(50_000_000 + i),
            available_bytes=_u64(200_000_000),
            usage_bytes=_u64(60_000_000 + i),
            rss_bytes=_u64(40_000_000 + i),
            page_faults=_u64(100_000 + i),
            major_page_faults=_u64(i),
        ),
        writable_layer=cri.FilesystemUsage(
            timestamp=ts,
            fs_id=cri.FilesystemIdentifier(mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"),
            used_bytes=_u64(4096 * (i + 1)),
            inodes_used=_u64(12 + i),
        ),
        swap=cri.SwapUsage(timestamp=ts, swap_available_bytes=_u64(0), swap_usage_bytes=_u64(0)),
    )


def stats_reply() -> cri.ListContainerStatsResponse:
    """ListContainerStats for a node with enough containers to pass STATS_BYTES."""
    reply = cri.ListContainerStatsResponse()
    while reply.ByteSize() < STATS_BYTES:
        reply.stats.extend(container_stats(len(reply.stats) + j) for j in range(100))
    return reply


def container_event(i: int) -> cri.ContainerEventResponse:
    """A CONTAINER_STARTED event with its pod's and container's status (about 1.5 KB)."""
    labels = _labels(i)
    pod_dir = f"/var/lib/kubelet/pods/{labels['io.kubernetes.pod.uid']}"
    status = cri.ContainerStatus(
        id=_hex_id(f"c{i}"),
        metadata=_metadata(i),
        state=cri.CONTAINER_RUNNING,
        created_at=NOW_NS,
        started_at=NOW_NS + 50_000_000,
        image=cri.ImageSpec(image="registry.k8s.io/nginx:1.27"),
        image_ref=f"sha256:{_hex_id('img')}",
        labels=labels,
        annotations=_annotations(i),
        mounts=[
            cri.Mount(container_path="/var/run/secrets/kubernetes.io/serviceaccount",
                      host_path=f"{pod_dir}/volumes/token", readonly=True),
            cri.Mount(container_path="/etc/hosts", host_path=f"{pod_dir}/etc-hosts"),
        ],
        log_path=f"/var/log/pods/default_web-{i}/app-{i}/0.log",
    )
    sandbox = cri.PodSandboxStatus(
        id=_hex_id(f"p{i // 2}"),
        metadata=cri.PodSandboxMetadata(
            name=labels["io.kubernetes.pod.name"], uid=labels["io.kubernetes.pod.uid"], namespace="default"
        ),
        state=cri.SANDBOX_READY,
        created_at=NOW_NS,
        network=cri.PodSandboxNetworkStatus(ip=f"10.244.{i // 250}.{i % 250 + 2}"),
        linux=cri.LinuxPodSandboxStatus(namespaces=cri.Namespace(options=cri.NamespaceOption())),
        labels=labels,
        annotations={"kubernetes.io/config.seen": "2026-11-23T22:00:00Z", "kubernetes.io/config.source": "api"},
    )
    return cri.ContainerEventResponse(
        container_id=status.id,
        container_event_type=cri.CONTAINER_STARTED_EVENT,
        created_at=NOW_NS,
        pod_sandbox_status=sandbox,
        containers_statuses=[status],
    )


def replies() -> dict[str, Message]:
    return {
        "Version": cri.VersionResponse(version="0.1.0", runtime_name="containerd",
                                       runtime_version="v1.7.24", runtime_api_version="v1"),
        "ListContainers": cri.ListContainersResponse(containers=[container(i) for i in range(LIST_CONTAINERS)]),
        "ListContainerStats": stats_reply(),
        "GetContainerEvents": container_event(1),
    }


def requests() -> dict[str, Message]:
    return {
        "Version": cri.VersionRequest(version="v1"),
        "ListContainers": cri.ListContainersRequest(filter=cri.ContainerFilter()),
        "ListContainerStats": cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter()),
        "GetContainerEvents": cri.GetEventsRequest(),
    }


def write(root: Path) -> dict[str, int]:
    """Write requests/ and replies/ under root; return each reply's size in bytes."""
    sizes: dict[str, int] = {}
    for kind, messages in (("requests", requests()), ("replies", replies())):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for method, message in messages.items():
            data = message.SerializeToString()
            (root / kind / f"{method}.bin").write_bytes(data)
            if kind == "replies":
                sizes[method] = len(data)
    return sizes


if __name__ == "__main__":
    import sys
    import tempfile

    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    print(target, write(target))
