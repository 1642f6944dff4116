"""Builders of recorded calls and recordings shared by the recorder, store, query and CLI tests."""

from __future__ import annotations

import hashlib
import itertools
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from cri_proxy.messages.decode import method_types
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.model.call import (
    Direction,
    Message,
    Outcome,
    RecordedCall,
    api_version_of,
)
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import db
from cri_proxy.store.readonly import open_readonly

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
IMAGE_METHODS = {"PullImage", "ImageStatus", "RemoveImage", "ListImages", "ImageFsInfo"}
_unique = itertools.count()
POD = {"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}}



def make_call(
    method: str,
    request: dict[str, Any] | bytes | None = None,
    response: dict[str, Any] | bytes | None = None,
    *,
    started: float = T0,
    duration_ms: float | None = 1.0,
    status: int | None = 0,
    message: str | None = None,
    outcome: Outcome = Outcome.COMPLETED,
    version: str = "v1",
    stream_id: int = 1,
) -> RecordedCall:
    """A finished CRI call with real protobuf messages (dicts are encoded via the protos)."""
    service = "ImageService" if method in IMAGE_METHODS else "RuntimeService"
    path = f"/runtime.{version}.{service}/{method}"
    call = RecordedCall(
        conn_id=1,
        stream_id=stream_id,
        started_at=started,
        path=path,
        duration_s=None if duration_ms is None else duration_ms / 1000,
        upstream="unix:///run/containerd/containerd.sock",
        peer_pid=4242,
        peer_uid=0,
        client_api=api_version_of(path),
        upstream_api=api_version_of(path),
        request_metadata=[("user-agent", "grpc-go/1.60.1"), ("content-type", "application/grpc")],
        status_code=status,
        status_message=message,
        outcome=outcome,
    )
    for direction, body in ((Direction.REQUEST, request), (Direction.RESPONSE, response)):
        if body is None:
            continue
        data = body if isinstance(body, bytes) else encode(path, direction.value, body)
        offset = 0.0 if direction is Direction.REQUEST else (duration_ms or 0) / 1000
        call.add_message(Message(direction, 0, offset, data))
    if status is not None:
        call.trailers = [("grpc-status", str(status))]
    return call


def record(path: Path, calls: list[RecordedCall], **options: Any) -> Recorder:
    """Records the calls with a real Recorder and closes it (everything flushed)."""
    recorder = Recorder(path, options=RecorderOptions(**options))
    recorder.start()
    for call in calls:
        recorder.submit(call)
    recorder.close()
    return recorder


def rows(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def read_rows(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Like rows(), through the project's read-only opener (for a recording a proxy is writing)."""
    from cri_proxy.store.readonly import open_readonly

    conn = open_readonly(path)
    try:
        return list(conn.execute(query, params))
    finally:
        conn.close()


def kubelet_second(second: int, pods: int = 20, per_pod: int = 2) -> list[RecordedCall]:
    """What an idle kubelet asks in one second (PLEG relist, status, stats, images, probes)."""
    t = T0 + second
    containers = [_container(i, j) for i in range(pods) for j in range(per_pod)]
    calls = [
        make_call("ListPodSandbox", {}, {"items": [_pod(i) for i in range(pods)]}, started=t),
        make_call("ListContainers", {"filter": {}}, {"containers": containers}, started=t + 0.001),
    ]
    if second % 5 == 0:
        calls.append(make_call("Status", {}, {"status": {"conditions": [
            {"type": "RuntimeReady", "status": True}, {"type": "NetworkReady", "status": True}]}}, started=t + 0.2))  # fmt: skip
    if second % 10 == 0:
        calls.append(make_call("Version", {"version": "0.1.0"}, {"version": "0.1.0", "runtime_name": "containerd",
                     "runtime_version": "1.6.20", "runtime_api_version": "v1"}, started=t + 0.3))  # fmt: skip
        calls.append(make_call("ImageFsInfo", {}, {"image_filesystems": [{"timestamp": str(second),
                     "fs_id": {"mountpoint": "/var/lib/containerd"}, "used_bytes": {"value": "123456789"}}]}, started=t + 0.4))  # fmt: skip
        stats = [{"attributes": {"id": c["id"], "metadata": c["metadata"], "labels": c["labels"]},
                  "cpu": {"timestamp": str(second * 10**9), "usage_core_nano_seconds": {"value": str(second * 7919 + k)}},
                  "memory": {"timestamp": str(second * 10**9), "working_set_bytes": {"value": str(10**7 + second + k)}}}
                 for k, c in enumerate(containers)]  # fmt: skip
        calls.append(make_call("ListContainerStats", {"filter": {}}, {"stats": stats}, started=t + 0.5))
        for i in range(pods):  # an exec readiness probe per pod
            calls.append(make_call("ExecSync", {"container_id": containers[i * per_pod]["id"], "cmd": ["cat", "/tmp/ready"],
                                   "timeout": 1}, {"stdout": "b2sK"}, started=t + 0.6 + i / 1000))  # fmt: skip
    if second % 30 == 0:
        images = [{"id": f"sha256:{k:064d}", "repo_tags": [f"registry.example/app{k}:1.0"], "size": "12345678"}
                  for k in range(15)]  # fmt: skip
        calls.append(make_call("ListImages", {}, {"images": images}, started=t + 0.7))
    return calls


def stats_reply(containers: int, second: int, rng: random.Random, node: str = "a") -> bytes:
    """A ListContainerStats reply whose counters moved since the last one, as on a node
    (another `node`: other container ids, a reply that does not resemble this one's)."""
    reply = v1.ListContainerStatsResponse()
    for k in range(containers):
        reply.stats.append(v1.ContainerStats(
            attributes=v1.ContainerAttributes(id=hashlib.sha256(f"{node}{k}".encode()).hexdigest(), metadata=v1.ContainerMetadata(name=f"app{k}"),
                                               labels={"io.kubernetes.pod.name": f"web-{k}", "tier": "front"}),
            cpu=v1.CpuUsage(timestamp=second * 10**9 + rng.randrange(10**7),
                             usage_core_nano_seconds=v1.UInt64Value(value=10**11 + second * 10**9 + rng.randrange(10**8))),
            memory=v1.MemoryUsage(timestamp=second * 10**9,
                                   working_set_bytes=v1.UInt64Value(value=4096 * (30_000 + rng.randrange(64))))))
    return reply.SerializeToString()


def make_unique(call: RecordedCall) -> RecordedCall:
    """A redact step that defeats dedup: appends an unknown protobuf field (number 127) with a
    counter to every message, so each stored body is distinct (for the no-dedup comparison)."""
    for m in call.messages:
        m.data = m.data + b"\xfa\x07\x08" + next(_unique).to_bytes(8, "big")
    return call


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def version_call(i: int) -> RecordedCall:
    return make_call("Version", {"version": f"v{i}"}, {"runtime_name": "containerd"}, started=T0 + i / 1000)


def integrity(path: Path) -> list[str]:
    conn = open_readonly(path)
    try:
        return db.integrity_check(conn)
    finally:
        conn.close()


def lifecycle_calls() -> list[RecordedCall]:
    t = T0
    return [
        make_call("RunPodSandbox", {"config": POD}, None, started=t, duration_ms=30_000, status=2,
                  message="failed to set up network"),  # fmt: skip
        make_call("RunPodSandbox", {"config": POD}, {"pod_sandbox_id": "p1"}, started=t + 40,
                  duration_ms=120.0),  # fmt: skip
        make_call("PullImage", {"image": {"image": "nginx:1"}, "sandbox_config": POD},
                  {"image_ref": "sha256:abc"}, started=t + 41, duration_ms=2500.0),  # fmt: skip
        make_call("CreateContainer",
                  {"pod_sandbox_id": "p1", "config": {"metadata": {"name": "app"}, "image": {"image": "sha256:abc"}},
                   "sandbox_config": POD},
                  {"container_id": "c1"}, started=t + 44, duration_ms=20.0),  # fmt: skip
        make_call("StartContainer", {"container_id": "c1"}, {}, started=t + 44.5, duration_ms=80.0),
        make_call("ContainerStatus", {"container_id": "c1"}, None, started=t + 45, status=5),
        make_call("StopContainer", {"container_id": "c1", "timeout": 30}, None, started=t + 100,
                  duration_ms=30_000, status=4),  # fmt: skip
        make_call("StopContainer", {"container_id": "c1"}, {}, started=t + 131, duration_ms=5.0),
        make_call("RemoveContainer", {"container_id": "c1"}, {}, started=t + 132),
        make_call("StopPodSandbox", {"pod_sandbox_id": "p1"}, {}, started=t + 133),
        make_call("RemovePodSandbox", {"pod_sandbox_id": "p1"}, None, started=t + 134, status=5),
        make_call("GetContainerEvents", {}, None, started=t + 1, duration_ms=None,
                  status=None, outcome=Outcome.CANCELLED),  # fmt: skip
        make_call("ListContainers", {}, {}, started=t + 2, duration_ms=1500.0),
    ]




def encode(path: str, direction: str, fields: dict[str, Any]) -> bytes:
    types = method_types(path)
    if types is None:
        raise KeyError(path)
    cls = types.request if direction == "request" else types.response
    return json_format.ParseDict(fields, cls()).SerializeToString()


def _pod(i: int) -> dict[str, Any]:
    return {
        "id": f"{i:02d}" + "a" * 62,
        "metadata": {"name": f"web-{i}-7d9f8b6c5-x2k4p", "namespace": "shop", "uid": f"uid-{i:04d}", "attempt": 0},
        "state": "SANDBOX_READY",
        "created_at": "1700000000000000000",
        "labels": {"app": "web", "io.kubernetes.pod.name": f"web-{i}", "io.kubernetes.pod.namespace": "shop",
                   "pod-template-hash": "7d9f8b6c5"},
        "annotations": {"kubernetes.io/config.seen": "2026-11-23T10:00:00Z", "kubernetes.io/config.source": "api"},
    }  # fmt: skip


def _container(i: int, j: int) -> dict[str, Any]:
    return {
        "id": f"{i:02d}{j}" + "c" * 61,
        "pod_sandbox_id": f"{i:02d}" + "a" * 62,
        "metadata": {"name": f"app-{j}", "attempt": 0},
        "image": {"image": "sha256:" + "e" * 64},
        "image_ref": "sha256:" + "e" * 64,
        "state": "CONTAINER_RUNNING",
        "created_at": "1700000000000000000",
        "labels": {"io.kubernetes.container.name": f"app-{j}", "io.kubernetes.pod.name": f"web-{i}",
                   "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.uid": f"uid-{i:04d}"},
        "annotations": {"io.kubernetes.container.hash": "5d8b7d1a", "io.kubernetes.container.restartCount": "0"},
    }  # fmt: skip




