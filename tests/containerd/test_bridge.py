"""Translation against a real containerd 1.6: a v1 client driving its v1alpha2 service through the
proxy (`--upstream-api v1alpha2`: the relay rewrites the paths), with the same outcomes as
calling its v1 service directly, and GetContainerEvents emulated (containerd 1.6 lacks it:
the bridge)."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
from typing import cast

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers import containerd_harness as harness
from tests.helpers.containerd_fixtures import (
    container_config,
    pod_config,
)
from tests.helpers.proxyproc import ProxyProcess

pytestmark = [pytest.mark.containerd, pytest.mark.timeout(120)]

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]


async def start_and_clean(rt: v1_grpc.RuntimeServiceStub, ctd: harness.Containerd, name: str) -> tuple[str, str]:
    config = cast(v1.PodSandboxConfig, pod_config(v1, ctd, name, name))
    pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
    created = await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod.pod_sandbox_id, config=cast(v1.ContainerConfig, container_config(v1)),
        sandbox_config=config))
    return pod.pod_sandbox_id, created.container_id


async def remove(rt: v1_grpc.RuntimeServiceStub, pod: str, container: str) -> None:
    await rt.StopContainer(v1.StopContainerRequest(container_id=container, timeout=1))
    await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=container))
    await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod))
    await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod))


async def test_a_v1_client_drives_containerds_v1alpha2_service(
        containerd: harness.Containerd, sock_dir: pathlib.Path) -> None:  # noqa: F811
    db = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", containerd.sock, "--upstream-api", "v1alpha2",
                            "--cgroup-driver", "cgroupfs", "--db", str(db)) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
            rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
            assert (await rt.Version(v1.VersionRequest())).runtime_api_version == "v1alpha2"
            assert (await img.ImageFsInfo(v1.ImageFsInfoRequest())).image_filesystems
            status = await img.ImageStatus(v1.ImageStatusRequest(image=v1.ImageSpec(image=harness.BUSYBOX_REF)))
            assert harness.BUSYBOX_REF in status.image.repo_tags
            pod, container = await start_and_clean(rt, containerd, "translated")
            try:
                await rt.StartContainer(v1.StartContainerRequest(container_id=container))
                state = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=container))
                assert state.status.state == v1.CONTAINER_RUNNING
                probe = await rt.ExecSync(v1.ExecSyncRequest(container_id=container, cmd=["echo", "hi"], timeout=10))
                assert probe.stdout == b"hi\n" and probe.exit_code == 0
                listed = await rt.ListContainers(v1.ListContainersRequest(
                    filter=v1.ContainerFilter(pod_sandbox_id=pod)))
                assert [c.id for c in listed.containers] == [container]
                config = await rt.RuntimeConfig(v1.RuntimeConfigRequest())
                assert config.linux.cgroup_driver == v1.CGROUPFS
            finally:
                await remove(rt, pod, container)
            assert not (await rt.ListPodSandbox(v1.ListPodSandboxRequest(
                filter=v1.PodSandboxFilter(id=pod)))).items
        assert await proxy.astop() == 0, proxy.log()
        assert "translating CRI v1 -> v1alpha2 in the relay" in proxy.log()  # not through the bridge
    with sqlite3.connect(db) as conn:
        apis = set(conn.execute("SELECT client_api, upstream_api FROM calls"))
        failed = conn.execute("SELECT count(*) FROM calls WHERE status_code <> 0").fetchone()[0]
    assert apis == {("v1", "v1alpha2")} and failed == 0


async def test_emulated_events_in_front_of_containerd_1_6(
        containerd: harness.Containerd, sock_dir: pathlib.Path) -> None:  # noqa: F811
    async with ProxyProcess(sock_dir / "p.sock", containerd.sock, "--emulate-events", "--events-period", "0.3"):
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
            rt = v1_grpc.RuntimeServiceStub(channel)
            events = rt.GetContainerEvents(v1.GetEventsRequest())
            await asyncio.sleep(0.8)  # the first relist sets the emulation's baseline
            pod, container = await start_and_clean(rt, containerd, "events")
            try:
                seen = [await asyncio.wait_for(events.read(), 5)]
                await rt.StartContainer(v1.StartContainerRequest(container_id=container))
                seen.append(await asyncio.wait_for(events.read(), 5))
                await rt.StopContainer(v1.StopContainerRequest(container_id=container, timeout=1))
                seen.append(await asyncio.wait_for(events.read(), 5))
                await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=container))
                seen.append(await asyncio.wait_for(events.read(), 5))
            finally:
                events.cancel()
                await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod))
                await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod))
    assert [(e.container_id, e.container_event_type) for e in seen] == [
        (container, v1.CONTAINER_CREATED_EVENT), (container, v1.CONTAINER_STARTED_EVENT),
        (container, v1.CONTAINER_STOPPED_EVENT), (container, v1.CONTAINER_DELETED_EVENT)]


async def outcomes(channel: grpc.aio.Channel, ctd: harness.Containerd, name: str) -> list[str]:
    """What a kubelet sees of a pod's life, the ids left out (they differ from run to run)."""
    rt = v1_grpc.RuntimeServiceStub(channel)
    seen = [(await rt.Version(v1.VersionRequest())).runtime_name]
    pod, container = await start_and_clean(rt, ctd, name)
    try:
        for step in (rt.StartContainer(v1.StartContainerRequest(container_id=container)),
                     rt.StartContainer(v1.StartContainerRequest(container_id="no-such-container"))):
            try:
                await step
                seen.append("OK")
            except grpc.aio.AioRpcError as exc:
                seen.append(exc.code().name)
        state = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=container))
        seen.append(v1.ContainerState.Name(state.status.state))
        probe = await rt.ExecSync(v1.ExecSyncRequest(container_id=container, cmd=["sh", "-c", "echo hi; exit 3"],
                                                     timeout=10))
        seen.append(f"{probe.exit_code}:{probe.stdout!r}")
        listed = await rt.ListContainers(v1.ListContainersRequest(filter=v1.ContainerFilter(pod_sandbox_id=pod)))
        seen.append(str(len(listed.containers)))
    finally:
        await remove(rt, pod, container)
    seen.append(str(len((await rt.ListPodSandbox(v1.ListPodSandboxRequest(filter=v1.PodSandboxFilter(id=pod)))).items)))
    return seen


async def test_the_translated_lifecycle_ends_as_the_direct_one(
        containerd: harness.Containerd, sock_dir: pathlib.Path) -> None:  # noqa: F811
    async with grpc.aio.insecure_channel(f"unix://{containerd.sock}", options=CHANNEL) as channel:
        direct = await outcomes(channel, containerd, "direct")
    async with ProxyProcess(sock_dir / "p.sock", containerd.sock, "--upstream-api", "v1alpha2"):
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
            translated = await outcomes(channel, containerd, "via-relay")
    assert translated == direct and direct[1:3] == ["OK", "NOT_FOUND"]
