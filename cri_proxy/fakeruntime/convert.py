"""From the fake runtime's state to CRI v1 messages, and the CRI list filters.

Filters follow the CRI definitions: every set field must match; `id` may be a unique
prefix (containerd resolves truncated ids); `label_selector` entries must all be present
with equal values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from cri_proxy.fakeruntime.state import Container, Pod, RuntimeState
from cri_proxy.pb.runtime.v1 import api_pb2 as v1


def _labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _id_matches(full: str, wanted: str) -> bool:
    return not wanted or full.startswith(wanted)


def pod_proto(pod: Pod) -> v1.PodSandbox:
    cfg = pod.config
    return v1.PodSandbox(
        id=pod.id,
        metadata=cfg.metadata,
        state=pod.state,  # type: ignore[arg-type]
        created_at=pod.created_at,
        labels=cfg.labels,
        annotations=cfg.annotations,
        runtime_handler=pod.runtime_handler,
    )


def pod_status_proto(pod: Pod) -> v1.PodSandboxStatus:
    cfg = pod.config
    ns = cfg.linux.security_context.namespace_options
    return v1.PodSandboxStatus(
        id=pod.id,
        metadata=cfg.metadata,
        state=pod.state,  # type: ignore[arg-type]
        created_at=pod.created_at,
        network=v1.PodSandboxNetworkStatus(ip="" if ns.network == v1.NODE else pod.ip),
        linux=v1.LinuxPodSandboxStatus(namespaces=v1.Namespace(options=ns)),
        labels=cfg.labels,
        annotations=cfg.annotations,
        runtime_handler=pod.runtime_handler,
    )


def container_proto(ctr: Container) -> v1.Container:
    cfg = ctr.config
    return v1.Container(
        id=ctr.id,
        pod_sandbox_id=ctr.pod_id,
        metadata=cfg.metadata,
        image=cfg.image,
        image_ref=ctr.image_ref,
        image_id=ctr.image_id,
        state=ctr.state,  # type: ignore[arg-type]
        created_at=ctr.created_at,
        labels=cfg.labels,
        annotations=cfg.annotations,
    )


def container_status_proto(ctr: Container) -> v1.ContainerStatus:
    cfg = ctr.config
    return v1.ContainerStatus(
        id=ctr.id,
        metadata=cfg.metadata,
        state=ctr.state,  # type: ignore[arg-type]
        created_at=ctr.created_at,
        started_at=ctr.started_at,
        finished_at=ctr.finished_at,
        exit_code=ctr.exit_code,
        image=cfg.image,
        image_ref=ctr.image_ref,
        image_id=ctr.image_id,
        reason=ctr.reason,
        message=ctr.message,
        labels=cfg.labels,
        annotations=cfg.annotations,
        mounts=cfg.mounts,
        log_path=ctr.log_path,
        resources=v1.ContainerResources(linux=ctr.resources),
    )


def container_info(ctr: Container, pod: Pod | None) -> dict[str, str]:
    """The verbose `info` map: one JSON document under "info", as containerd returns it."""
    doc = {
        "sandboxID": ctr.pod_id,
        "pid": 0 if ctr.state != v1.CONTAINER_RUNNING else 1000 + int(ctr.id[:4], 16) % 30000,
        "runtimeType": "io.containerd.runc.v2",
        "config": {
            "metadata": {"name": ctr.config.metadata.name, "attempt": ctr.config.metadata.attempt},
            "image": {"image": ctr.config.image.image},
            "command": list(ctr.config.command),
            "args": list(ctr.config.args),
        },
        "sandboxName": pod.config.metadata.name if pod else "",
    }
    return {"info": json.dumps(doc)}


def pod_info(pod: Pod) -> dict[str, str]:
    doc = {
        "pid": 1000 + int(pod.id[:4], 16) % 30000,
        "processStatus": "running" if pod.state == v1.SANDBOX_READY else "exited",
        "netNamespaceClosed": pod.state != v1.SANDBOX_READY,
        "runtimeHandler": pod.runtime_handler,
        "config": {"metadata": {"name": pod.config.metadata.name,
                                "namespace": pod.config.metadata.namespace}},
    }
    return {"info": json.dumps(doc)}


def filter_pods(state: RuntimeState, flt: v1.PodSandboxFilter | None) -> list[Pod]:
    pods: Iterable[Pod] = state.pods.values()
    if flt is None:
        return list(pods)
    return [
        p
        for p in pods
        if _id_matches(p.id, flt.id)
        and (not flt.HasField("state") or p.state == flt.state.state)
        and _labels_match(p.config.labels, flt.label_selector)
    ]


def filter_containers(state: RuntimeState, flt: v1.ContainerFilter | None) -> list[Container]:
    ctrs: Iterable[Container] = state.containers.values()
    if flt is None:
        return list(ctrs)
    return [
        c
        for c in ctrs
        if _id_matches(c.id, flt.id)
        and _id_matches(c.pod_id, flt.pod_sandbox_id)
        and (not flt.HasField("state") or c.state == flt.state.state)
        and _labels_match(c.config.labels, flt.label_selector)
    ]


def filter_stats_containers(
    state: RuntimeState, flt: v1.ContainerStatsFilter | None
) -> list[Container]:
    """Containers whose stats are listed: only running ones, as containerd does."""
    ctrs = [c for c in state.containers.values() if c.state == v1.CONTAINER_RUNNING]
    if flt is None:
        return ctrs
    return [
        c
        for c in ctrs
        if _id_matches(c.id, flt.id)
        and _id_matches(c.pod_id, flt.pod_sandbox_id)
        and _labels_match(c.config.labels, flt.label_selector)
    ]


def filter_stats_pods(state: RuntimeState, flt: v1.PodSandboxStatsFilter | None) -> list[Pod]:
    pods = [p for p in state.pods.values() if p.state == v1.SANDBOX_READY]
    if flt is None:
        return pods
    return [
        p
        for p in pods
        if _id_matches(p.id, flt.id) and _labels_match(p.config.labels, flt.label_selector)
    ]
