"""Helpers for the fake runtime's tests: serve one on a unix socket and dial it like the kubelet."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc

MIB = 1024 * 1024
# The kubelet's CRI client limits, both ways.
KUBELET_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * MIB),
    ("grpc.max_send_message_length", 16 * MIB),
]


@contextlib.asynccontextmanager
async def serve(
    sock_dir: pathlib.Path, api: str = "both", **opts: Any
) -> AsyncIterator[tuple[FakeRuntimeServer, grpc.aio.Channel]]:
    """A fake runtime on `sock_dir/rt.sock` and a channel to it, both closed on exit."""
    address = f"unix://{sock_dir}/rt.sock"
    server = await start_fake_runtime(address, api, **opts)  # type: ignore[arg-type]
    channel = grpc.aio.insecure_channel(server.address, options=KUBELET_CHANNEL_OPTIONS)
    try:
        yield server, channel
    finally:
        await channel.close(None)
        await server.stop(None)


def pod_config(
    name: str = "web", namespace: str = "default", attempt: int = 0, **labels: str
) -> v1.PodSandboxConfig:
    md = v1.PodSandboxMetadata(name=name, namespace=namespace, uid=f"uid-{name}", attempt=attempt)
    return v1.PodSandboxConfig(
        metadata=md,
        hostname=name,
        labels=labels,
        log_directory=f"/var/log/pods/{namespace}_{name}_uid-{name}",
    )


def container_config(
    name: str = "app", image: str = "docker.io/library/busybox:latest", **labels: str
) -> v1.ContainerConfig:
    return v1.ContainerConfig(
        metadata=v1.ContainerMetadata(name=name),
        image=v1.ImageSpec(image=image),
        labels=labels,
        log_path=f"{name}/0.log",
        envs=[v1.KeyValue(key="GREETING", value=b"hello")],
    )


async def run_pod(rt: v1_grpc.RuntimeServiceStub, config: v1.PodSandboxConfig | None = None) -> str:
    reply = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config or pod_config()))
    return reply.pod_sandbox_id


async def create_container(
    rt: v1_grpc.RuntimeServiceStub, pod_id: str, config: v1.ContainerConfig | None = None
) -> str:
    req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=config or container_config())
    return (await rt.CreateContainer(req)).container_id


@pytest.fixture
async def runtime(sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """The stand-in runtime (both CRI versions) on `sock_dir/rt.sock`; its socket path."""
    server = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    yield sock_dir / "rt.sock"
    await server.stop(0)
