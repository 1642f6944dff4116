"""The fake runtime over real gRPC on a unix socket: lifecycle, errors, sockets, serving until
stopped. Its parts have their twins: test_handlers.py (API modes), test_service_image.py,
test_convert.py (filters), test_service_ops.py (Version, Status)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import sys

import grpc
import pytest

from cri_proxy.fakeruntime import run_fake_runtime, start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as a2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as a2_grpc
from tests.helpers.fakeruntime import container_config, pod_config, run_pod, serve

pytestmark = pytest.mark.timeout(10)

BUSYBOX_ID = "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824"


async def test_pod_and_container_lifecycle_v1(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1") as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        pod_id = await run_pod(rt, pod_config())
        assert len(pod_id) == 64 and int(pod_id, 16) >= 0
        status = (await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod_id))).status
        assert status.state == v1.SANDBOX_READY and status.metadata.name == "web"
        assert status.network.ip.startswith("10.88.")

        req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config())
        ctr_id = (await rt.CreateContainer(req)).container_id
        cs = (await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr_id))).status
        assert cs.state == v1.CONTAINER_CREATED and cs.image_id == BUSYBOX_ID
        assert cs.log_path == "/var/log/pods/default_web_uid-web/app/0.log"

        await rt.StartContainer(v1.StartContainerRequest(container_id=ctr_id))
        cs = (await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr_id))).status
        assert cs.state == v1.CONTAINER_RUNNING and cs.started_at >= cs.created_at > 0

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.StartContainer(v1.StartContainerRequest(container_id=ctr_id))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "CONTAINER_RUNNING" in (err.value.details() or "")

        await rt.StopContainer(v1.StopContainerRequest(container_id=ctr_id, timeout=10))
        cs = (await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr_id))).status
        assert cs.state == v1.CONTAINER_EXITED and cs.exit_code == 0 and cs.finished_at >= cs.started_at
        assert cs.reason == "Completed"

        await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr_id))
        assert not (await rt.ListContainers(v1.ListContainersRequest())).containers
        await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        status = (await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod_id))).status
        assert status.state == v1.SANDBOX_NOTREADY
        await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        assert not (await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items


async def test_pod_and_container_lifecycle_v1alpha2(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1alpha2") as (_, ch):
        rt = a2_grpc.RuntimeServiceStub(ch)
        assert (await rt.Version(a2.VersionRequest())).runtime_api_version == "v1alpha2"
        cfg = a2.PodSandboxConfig(metadata=a2.PodSandboxMetadata(name="old", namespace="ns", uid="u1"))
        pod_id = (await rt.RunPodSandbox(a2.RunPodSandboxRequest(config=cfg))).pod_sandbox_id
        ccfg = a2.ContainerConfig(
            metadata=a2.ContainerMetadata(name="c"),
            image=a2.ImageSpec(image="busybox"),
            envs=[a2.KeyValue(key="A", value="text")],
        )
        ctr_id = (await rt.CreateContainer(a2.CreateContainerRequest(pod_sandbox_id=pod_id, config=ccfg))).container_id
        await rt.StartContainer(a2.StartContainerRequest(container_id=ctr_id))
        cs = (await rt.ContainerStatus(a2.ContainerStatusRequest(container_id=ctr_id))).status
        assert cs.state == a2.CONTAINER_RUNNING
        assert cs.image_ref == BUSYBOX_ID  # v1alpha2's image_ref is the image id
        got = await rt.ExecSync(a2.ExecSyncRequest(container_id=ctr_id, cmd=["env"]))
        assert got.stdout == b"A=text\n"
        await rt.StopContainer(a2.StopContainerRequest(container_id=ctr_id, timeout=0))
        cs = (await rt.ContainerStatus(a2.ContainerStatusRequest(container_id=ctr_id))).status
        assert cs.state == a2.CONTAINER_EXITED and cs.exit_code == 137
        await rt.StopPodSandbox(a2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        await rt.RemovePodSandbox(a2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        assert not (await rt.ListContainers(a2.ListContainersRequest())).containers
        assert not (await rt.ListPodSandbox(a2.ListPodSandboxRequest())).items


async def test_stop_and_remove_pod_take_its_containers(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        pod_id = await run_pod(rt, pod_config())
        ids = []
        for name in ("a", "b"):
            req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config(name))
            ids.append((await rt.CreateContainer(req)).container_id)
        await rt.StartContainer(v1.StartContainerRequest(container_id=ids[0]))
        await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        states = {c.id: c.state for c in (await rt.ListContainers(v1.ListContainersRequest())).containers}
        # Only running containers stop; a created one stays created, as with containerd.
        assert states == {ids[0]: v1.CONTAINER_EXITED, ids[1]: v1.CONTAINER_CREATED}
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config("c")))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        assert not (await rt.ListContainers(v1.ListContainersRequest())).containers
        # Removing what is gone is not an error (CRI: idempotent).
        await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ids[0]))


async def test_pod_name_is_reserved(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=pod_config()))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=pod_config()))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "is reserved for" in (err.value.details() or "")
        await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=pod_config(attempt=1)))
        assert len((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items) == 2


async def test_create_container_needs_image_and_pod(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        img = v1_grpc.ImageServiceStub(ch)
        pod_id = await run_pod(rt, pod_config())
        cfg = container_config(image="quay.io/example/missing:1")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "quay.io/example/missing:1" in (err.value.details() or "")
        await img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image="quay.io/example/missing:1")))
        await rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id="f" * 64, config=cfg))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "method, request_",
    [
        ("PodSandboxStatus", v1.PodSandboxStatusRequest(pod_sandbox_id="abc123")),
        ("StopPodSandbox", v1.StopPodSandboxRequest(pod_sandbox_id="abc123")),
        ("ContainerStatus", v1.ContainerStatusRequest(container_id="abc123")),
        ("StartContainer", v1.StartContainerRequest(container_id="abc123")),
        ("StopContainer", v1.StopContainerRequest(container_id="abc123")),
        ("ContainerStats", v1.ContainerStatsRequest(container_id="abc123")),
        ("ExecSync", v1.ExecSyncRequest(container_id="abc123", cmd=["true"])),
    ],
)
async def test_unknown_ids_are_not_found(sock_dir: pathlib.Path, method: str, request_: object) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(rt, method)(request_)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert '"abc123": not found' in (err.value.details() or "")


async def test_stale_socket_is_replaced_and_bare_path_accepted(sock_dir: pathlib.Path) -> None:
    path = sock_dir / "rt.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves the socket file behind, as a crashed runtime would
    server = await start_fake_runtime(str(path), "v1")
    try:
        assert server.address == f"unix://{path}"
        async with grpc.aio.insecure_channel(server.address) as ch:
            await v1_grpc.RuntimeServiceStub(ch).Version(v1.VersionRequest())
    finally:
        await server.stop(None)
    assert not path.exists()
    with pytest.raises(ValueError):
        await start_fake_runtime("unix://relative.sock")


async def test_run_fake_runtime_serves_until_cancelled(sock_dir: pathlib.Path) -> None:
    path = sock_dir / "run.sock"
    task = asyncio.create_task(run_fake_runtime(f"unix://{path}", "v1alpha2"))
    try:
        while not path.exists():
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(f"unix://{path}") as ch:
            got = await a2_grpc.RuntimeServiceStub(ch).Version(a2.VersionRequest())
            assert got.runtime_api_version == "v1alpha2"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not os.path.exists(path)


async def test_run_fake_runtime_stops_on_sigterm(sock_dir: pathlib.Path) -> None:
    path = sock_dir / "term.sock"
    code = (
        "import asyncio, sys; from cri_proxy.fakeruntime import run_fake_runtime; "
        "asyncio.run(run_fake_runtime(sys.argv[1], 'v1'))"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, f"unix://{path}")
    try:
        while not path.exists():
            assert proc.returncode is None
            await asyncio.sleep(0.02)
        async with grpc.aio.insecure_channel(f"unix://{path}") as ch:
            await v1_grpc.RuntimeServiceStub(ch).Version(v1.VersionRequest())
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert not path.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
