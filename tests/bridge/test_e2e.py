"""`cri-proxy run` in front of runtimes that speak another CRI version: the relay routes to the bridge."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest

from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc
from cri_proxy.store.readonly import open_readonly
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(90)

KUBELET_REDIAL = [("grpc.initial_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 500), ("grpc.use_local_subchannel_pool", 1)]


def kubelet_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=KUBELET_REDIAL)


@pytest.fixture
async def old_runtime(sock_dir: pathlib.Path) -> AsyncIterator[FakeRuntimeServer]:
    server = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1alpha2")
    yield server
    await server.stop(0)


async def v1_lifecycle(channel: grpc.aio.Channel) -> list[str]:
    """What a 1.26+ kubelet does first (v1 Version and ImageFsInfo must work), then a pod."""
    rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
    seen = [(await rt.Version(v1.VersionRequest())).runtime_api_version]
    await img.ImageFsInfo(v1.ImageFsInfoRequest())
    config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="web", namespace="ns", uid="u"))
    pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
    created = await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="c"),
                                  image=v1.ImageSpec(image="docker.io/library/busybox:latest"))))
    await rt.StartContainer(v1.StartContainerRequest(container_id=created.container_id))
    status = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=created.container_id))
    seen.append(v1.ContainerState.Name(status.status.state))
    probe = await rt.ExecSync(v1.ExecSyncRequest(container_id=created.container_id, cmd=["echo", "ok"], timeout=5))
    seen.append(probe.stdout.decode().strip())
    await rt.StopContainer(v1.StopContainerRequest(container_id=created.container_id, timeout=1))
    await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=created.container_id))
    await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod.pod_sandbox_id))
    await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod.pod_sandbox_id))
    seen.append(str(len((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items)))
    return seen


async def test_a_v1_kubelet_drives_a_v1alpha2_runtime(sock_dir: pathlib.Path, old_runtime: FakeRuntimeServer) -> None:
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(old_runtime.path), "--db", str(path), "--cgroup-driver", "systemd") as proxy:
        async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
            assert await v1_lifecycle(channel) == ["v1alpha2", "CONTAINER_RUNNING", "ok", "0"]
            config = await v1_grpc.RuntimeServiceStub(channel).RuntimeConfig(v1.RuntimeConfigRequest())
            assert config.linux.cgroup_driver == v1.SYSTEMD
            with pytest.raises(grpc.aio.AioRpcError) as err:  # the kubelet falls back to List*
                async for _ in v1_grpc.RuntimeServiceStub(channel).StreamContainers(v1.StreamContainersRequest()):
                    pass
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert await proxy.astop() == 0, proxy.log()
    conn = open_readonly(path)
    try:
        apis = set(conn.execute("SELECT client_api, upstream_api FROM calls"))
        session = conn.execute("SELECT runtime_api, image_api FROM sessions").fetchone()
    finally:
        conn.close()
    assert apis == {("v1", "v1alpha2")} and session == ("v1alpha2", "v1alpha2")


async def test_an_old_kubelet_negotiates_and_drives_a_v1_only_runtime(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path)):
            async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
                # a 1.23-1.25 kubelet asks v1 first and keeps v1 when it answers
                assert (await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())).version
            async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
                # a 1.20-1.22 kubelet speaks only v1alpha2: the proxy translates to v1
                old = v1alpha2_grpc.RuntimeServiceStub(channel)
                assert (await old.Version(v1alpha2.VersionRequest())).runtime_api_version == "v1"
                config = v1alpha2.PodSandboxConfig(metadata=v1alpha2.PodSandboxMetadata(name="a", namespace="b"))
                pod = await old.RunPodSandbox(v1alpha2.RunPodSandboxRequest(config=config))
                listed = await old.ListPodSandbox(v1alpha2.ListPodSandboxRequest())
                assert [p.id for p in listed.items] == [pod.pod_sandbox_id]
                images = await v1alpha2_grpc.ImageServiceStub(channel).ListImages(v1alpha2.ListImagesRequest())
                assert len(images.images) >= 1
    finally:
        await runtime.stop(0)


async def test_emulated_events_in_front_of_a_runtime_without_them(
        sock_dir: pathlib.Path, old_runtime: FakeRuntimeServer) -> None:
    async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(old_runtime.path), "--emulate-events", "--events-period", "0.2"):
        async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            events = rt.GetContainerEvents(v1.GetEventsRequest())
            await asyncio.sleep(0.5)  # the emulation's first relist sets its baseline
            config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="e", namespace="ns", uid="u"))
            pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
            created = await rt.CreateContainer(v1.CreateContainerRequest(
                pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config,
                config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="c"),
                                          image=v1.ImageSpec(image="docker.io/library/busybox:latest"))))
            first = await asyncio.wait_for(events.read(), 2)
            assert first.container_id == created.container_id
            assert first.container_event_type == v1.CONTAINER_CREATED_EVENT
            events.cancel()


async def test_a_runtime_swapped_behind_the_proxy_is_picked_up(
        sock_dir: pathlib.Path, old_runtime: FakeRuntimeServer) -> None:
    async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(old_runtime.path)):
        async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            assert (await rt.Version(v1.VersionRequest())).runtime_api_version == "v1alpha2"
            await old_runtime.stop(0)  # upgraded: it comes back speaking v1 only
            new = await start_fake_runtime(f"unix://{pathlib.Path(old_runtime.path)}", api="v1")
            try:
                for _ in range(100):  # the same client channel, after its own re-dial
                    try:
                        if (await rt.Version(v1.VersionRequest(), timeout=2)).runtime_api_version == "v1":
                            break
                    except grpc.aio.AioRpcError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("the upgraded runtime was never reached")
                listed = await rt.ListContainers(v1.ListContainersRequest())
                assert listed is not None
            finally:
                await new.stop(0)


async def test_bridged_calls_are_recorded_with_the_client_that_made_them(
        sock_dir: pathlib.Path, old_runtime: FakeRuntimeServer) -> None:
    """The bridge's only peer is the relay; the relay's socket to it names the connection, so
    its calls carry the real client, in the clients table as in the metrics' client label."""
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(old_runtime.path), "--emulate-events",
                            "--db", str(path)) as proxy:
        async with kubelet_channel(f"unix://{sock_dir}/p.sock") as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            await rt.Version(v1.VersionRequest())
            await rt.ListContainers(v1.ListContainersRequest())
        assert await proxy.astop() == 0
    me = pathlib.Path("/proc/self/comm").read_text().strip()
    with open_readonly(path) as conn:
        got = conn.execute("SELECT c.path, c.notes, k.pid, k.uid, k.name FROM calls c "
                           "JOIN clients k ON k.id = c.client_id ORDER BY c.id").fetchall()
    assert [(row[0], row[2:]) for row in got] == [
        ("/runtime.v1.RuntimeService/Version", (os.getpid(), os.getuid(), me)),
        ("/runtime.v1.RuntimeService/ListContainers", (os.getpid(), os.getuid(), me))]
    assert all("translated" in (row[1] or "") for row in got)  # served by the bridge
