"""Every CRI RPC answers through the proxy exactly as it does directly, against the fake runtime.

Each RPC of RuntimeService and ImageService, v1 and v1alpha2, is taken from the compiled
descriptors and called with raw bytes twice: straight on the fake runtime's socket and
through an in-process `RelayServer` (tests/helpers/alike.py's rig). What a client can observe
(status code, details, initial and trailing metadata, every response message's bytes) must be
equal. The few answers that legitimately change between two back-to-back calls are listed in
`VARYING`. Also: streams, sizes, unknown paths, deadlines, and a burst of connects.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import socket
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.server import RelayServer
from tests.helpers.alike import (
    ALL_RPCS,
    ENDLESS,
    MUTATING,
    PACKAGES,
    VARYING,
    method_of,
    observe,
    raw,
    rig,
    rpc_id,
    rpc_path,
    rpcs,
)
from tests.helpers.fakeruntime import MIB, create_container, pod_config, run_pod
from tests.helpers.realistic import (
    Ids,
    Lifecycle,
    populate_through_proxy,
    reading_requests,
)

pytestmark = pytest.mark.timeout(20)


# --- every RPC, an empty request ------------------------------------------------------------


@pytest.mark.parametrize("version, method", ALL_RPCS, ids=[rpc_id(r) for r in ALL_RPCS])
async def test_every_rpc_with_an_empty_request(sock_dir: pathlib.Path, version: str,
                                               method: MethodDescriptor) -> None:
    async with rig(sock_dir) as r:
        await r.compare(method, b"")


# --- every reading RPC, a realistic request -------------------------------------------------


READING_RPCS = [(v, m) for v, m in ALL_RPCS if m.name not in MUTATING | ENDLESS]


def test_every_rpc_is_covered_by_a_request_table() -> None:
    """A new RPC in the protos must get a realistic request here, or a place in MUTATING/ENDLESS."""
    ids = Ids("p", "r", "c", "e")
    for version, method in READING_RPCS:
        assert method.name in reading_requests(PACKAGES[version], ids), rpc_id((version, method))
    assert set(VARYING) <= {m.name for _, m in READING_RPCS}


@pytest.mark.parametrize("version, method", READING_RPCS, ids=[rpc_id(r) for r in READING_RPCS])
async def test_every_reading_rpc_with_a_realistic_request(sock_dir: pathlib.Path, version: str,
                                                          method: MethodDescriptor) -> None:
    async with rig(sock_dir) as r:
        ids = await populate_through_proxy(r)
        request = reading_requests(PACKAGES[version], ids)[method.name]()
        direct = await r.compare(method, request.SerializeToString())
    # The requests are meant to succeed: a comparison of two identical errors proves less.
    assert direct.code == grpc.StatusCode.OK, (direct.code, direct.details)
    if method.name in ("ContainerStatus", "ListContainers", "ListContainerStats", "StreamContainers"):
        assert ids.running.encode() in b"".join(direct.messages)
    if method.name in ("PodSandboxStatus", "ListPodSandbox", "StreamPodSandboxes", "PodSandboxStats"):
        assert ids.pod.encode() in b"".join(direct.messages)
    if method.name == "ExecSync":
        reply = v1.ExecSyncResponse.FromString(direct.messages[0])
        assert reply.exit_code == 3 and b"GREETING=hello" in reply.stdout and reply.stderr


# --- mutating RPCs: a whole lifecycle through the proxy -------------------------------------


@pytest.mark.parametrize("version", PACKAGES)
async def test_lifecycle_through_the_proxy(sock_dir: pathlib.Path, version: str) -> None:
    async with rig(sock_dir) as r:
        life, pkg = Lifecycle(r, version), PACKAGES[version]
        image = pkg.ImageSpec(image="quay.io/cri-proxy/lifecycle:1")
        pulled = await life.mutate("PullImage", pkg.PullImageRequest(image=image))
        status = await life.read("ImageStatus", pkg.ImageStatusRequest(image=image))
        assert status.image.id == pulled.image_ref and r.runtime.state.images.find(image.image)

        network = pkg.NetworkConfig(pod_cidr="10.244.7.0/24")
        await life.mutate("UpdateRuntimeConfig", pkg.UpdateRuntimeConfigRequest(
            runtime_config=pkg.RuntimeConfig(network_config=network)))
        info = (await life.read("Status", pkg.StatusRequest(verbose=True))).info
        assert json.loads(info["config"])["podCIDR"] == "10.244.7.0/24"

        config = pkg.PodSandboxConfig.FromString(pod_config("life").SerializeToString())
        pod = (await life.mutate("RunPodSandbox", pkg.RunPodSandboxRequest(config=config))).pod_sandbox_id
        assert (await life.pod_states())[pod] == pkg.SANDBOX_READY
        if "UpdatePodSandboxResources" in {m.name for m in rpcs(version)}:
            await life.mutate("UpdatePodSandboxResources", pkg.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=pod, resources=pkg.LinuxContainerResources(cpu_shares=256)))
            await life.read("PodSandboxStatus", pkg.PodSandboxStatusRequest(pod_sandbox_id=pod))

        ctr_config = pkg.ContainerConfig(metadata=pkg.ContainerMetadata(name="app"), image=image)
        ctr = (await life.mutate("CreateContainer", pkg.CreateContainerRequest(
            pod_sandbox_id=pod, config=ctr_config, sandbox_config=config))).container_id
        assert await life.container_states(pod) == {ctr: pkg.CONTAINER_CREATED}
        await life.mutate("UpdateContainerResources", pkg.UpdateContainerResourcesRequest(
            container_id=ctr, linux=pkg.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=MIB << 7)))
        await life.read("ContainerStatus", pkg.ContainerStatusRequest(container_id=ctr, verbose=True))
        assert r.runtime.state.containers[ctr].resources.cpu_shares == 512
        await life.mutate("StartContainer", pkg.StartContainerRequest(container_id=ctr))
        assert await life.container_states(pod) == {ctr: pkg.CONTAINER_RUNNING}
        await life.mutate("StopContainer", pkg.StopContainerRequest(container_id=ctr, timeout=0))
        assert await life.container_states(pod) == {ctr: pkg.CONTAINER_EXITED}
        status = await life.read("ContainerStatus", pkg.ContainerStatusRequest(container_id=ctr))
        assert status.status.exit_code == 137
        await life.mutate("RemoveContainer", pkg.RemoveContainerRequest(container_id=ctr))
        assert await life.container_states(pod) == {}

        await life.mutate("StopPodSandbox", pkg.StopPodSandboxRequest(pod_sandbox_id=pod))
        assert (await life.pod_states())[pod] == pkg.SANDBOX_NOTREADY
        await life.mutate("RemovePodSandbox", pkg.RemovePodSandboxRequest(pod_sandbox_id=pod))
        assert await life.pod_states() == {}
        await life.mutate("RemoveImage", pkg.RemoveImageRequest(image=image))
        assert not (await life.read("ImageStatus", pkg.ImageStatusRequest(image=image))).HasField("image")

        # Replaying the ends of the lifecycle is now stable, so it can be compared both ways.
        for name, request in [("StopContainer", pkg.StopContainerRequest(container_id=ctr)),
                              ("RemoveContainer", pkg.RemoveContainerRequest(container_id=ctr)),
                              ("StopPodSandbox", pkg.StopPodSandboxRequest(pod_sandbox_id=pod)),
                              ("RemovePodSandbox", pkg.RemovePodSandboxRequest(pod_sandbox_id=pod)),
                              ("StartContainer", pkg.StartContainerRequest(container_id=ctr))]:
            await r.compare(method_of(version, name), request.SerializeToString())
    assert life.mutated == MUTATING & {m.name for m in rpcs(version)}


# --- a runtime that serves one version only -------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v1alpha2"])
async def test_a_single_version_runtime_answers_alike(sock_dir: pathlib.Path, api: str) -> None:
    async with rig(sock_dir, api) as r:
        outcomes = await asyncio.gather(*(r.compare(m, b"") for _, m in ALL_RPCS))
        version = method_of(api, "Version")
        assert (await r.compare(version, b"")).code == grpc.StatusCode.OK
    for (version_name, method), outcome in zip(ALL_RPCS, outcomes):
        if version_name != api:
            assert outcome.code == grpc.StatusCode.UNIMPLEMENTED, rpc_id((version_name, method))


async def test_container_events_unimplemented_alike(sock_dir: pathlib.Path) -> None:
    async with rig(sock_dir, container_events=False) as r:
        outcome = await r.compare(method_of("v1", "GetContainerEvents"), b"")
    assert outcome.code == grpc.StatusCode.UNIMPLEMENTED


# --- streams ----------------------------------------------------------------------------------


async def test_container_events_stream_through_the_proxy(sock_dir: pathlib.Path) -> None:
    path = rpc_path(method_of("v1", "GetContainerEvents"))

    async def events(call: Any, count: int) -> list[v1.ContainerEventResponse]:
        result = []
        for _ in range(count):
            data = await asyncio.wait_for(call.read(), 5)
            event = v1.ContainerEventResponse.FromString(data)
            # The time the event was sent: each stream sends its own copy at its own time.
            assert event.created_at > 0
            event.ClearField("created_at")
            result.append(event)
        return result

    async with rig(sock_dir) as r:
        calls = [ch.unary_stream(path, request_serializer=raw, response_deserializer=raw)(b"")
                 for ch in (r.direct, r.proxied)]
        for _ in range(250):
            if r.runtime.state.event_listeners == 2:
                break
            await asyncio.sleep(0.02)
        assert r.runtime.state.event_listeners == 2
        rt = v1_grpc.RuntimeServiceStub(r.proxied)
        pod = await run_pod(rt)
        ctr = await create_container(rt, pod)
        await rt.StartContainer(v1.StartContainerRequest(container_id=ctr))
        await rt.StopContainer(v1.StopContainerRequest(container_id=ctr))
        await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr))
        direct, proxied = [await events(call, 4) for call in calls]
        for call in calls:
            call.cancel()
    assert proxied == direct
    assert [e.container_event_type for e in direct] == [
        v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT,
        v1.CONTAINER_STOPPED_EVENT, v1.CONTAINER_DELETED_EVENT]
    assert {e.container_id for e in direct} == {ctr}


async def test_v1_stream_rpcs_send_the_same_messages(sock_dir: pathlib.Path) -> None:
    streams = [m for m in rpcs("v1") if m.server_streaming and m.name not in ENDLESS]
    async with rig(sock_dir, stream_chunk_size=2) as r:
        r.runtime.runtime.populate(7, pods=3)
        for n in range(3):
            r.runtime.state.images.pull(f"quay.io/cri-proxy/stream-{n}:1")
        outcomes = {m.name: await r.compare(m, b"") for m in streams}
    assert set(outcomes) == {"StreamPodSandboxes", "StreamContainers", "StreamContainerStats",
                             "StreamPodSandboxStats", "StreamPodSandboxMetrics", "StreamImages"}
    # 3 pods, 7 containers, 5 images in chunks of 2; the fake runtime has no pod metrics.
    expected = {"StreamPodSandboxes": 2, "StreamContainers": 4, "StreamContainerStats": 4,
                "StreamPodSandboxStats": 2, "StreamPodSandboxMetrics": 0, "StreamImages": 3}
    assert {name: len(o.messages) for name, o in outcomes.items()} == expected
    assert all(o.code == grpc.StatusCode.OK for o in outcomes.values())


# --- size, unknown paths, deadlines -----------------------------------------------------------


async def test_a_15_mib_reply_and_a_too_big_one(sock_dir: pathlib.Path) -> None:
    method = method_of("v1", "ListContainers")
    async with rig(sock_dir) as r:
        r.runtime.runtime.populate(15, pods=2, annotation_bytes=MIB)
        big = await r.compare(method, b"")
        assert big.code == grpc.StatusCode.OK
        assert 15 * MIB <= len(big.messages[0]) < 16 * MIB
        # Past the kubelet's 16 MiB the client refuses the reply, with the same words both ways.
        r.runtime.runtime.populate(2, annotation_bytes=MIB)
        too_big = await r.compare(method, b"")
        assert too_big.code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("path", [
    "/runtime.v1.NoSuchService/Version",
    "/runtime.v1.RuntimeService/NoSuchMethod",
    "/runtime.v1alpha2.ImageService/StreamImages",  # a v1-only method under v1alpha2
    "/containerd.services.version.v1.Version/Version",
    "/grpc.health.v1.Health/Check",
])
async def test_unknown_paths_answer_alike(sock_dir: pathlib.Path, path: str) -> None:
    async with rig(sock_dir) as r:
        direct = await observe(r.direct, path, b"\x0a\x01x")
        proxied = await observe(r.proxied, path, b"\x0a\x01x")
    assert proxied == direct
    assert direct.code == grpc.StatusCode.UNIMPLEMENTED


async def test_deadlines_answer_alike(sock_dir: pathlib.Path) -> None:
    path = rpc_path(method_of("v1", "ExecSync"))
    async with rig(sock_dir) as r:
        ids = await populate_through_proxy(r)
        sleep = v1.ExecSyncRequest(container_id=ids.running, cmd=["sleep", "5"]).SerializeToString()
        # The client's own deadline, shorter than the command.
        by_client = await asyncio.gather(*(observe(ch, path, sleep, timeout=0.5)
                                           for ch in (r.direct, r.proxied)))
        # ExecSync's own timeout: the runtime answers DEADLINE_EXCEEDED with its own words.
        bounded = v1.ExecSyncRequest(container_id=ids.running, cmd=["sleep", "5"], timeout=1)
        by_runtime = await asyncio.gather(*(observe(ch, path, bounded.SerializeToString())
                                            for ch in (r.direct, r.proxied)))
    assert by_client[1] == by_client[0]
    assert by_client[0].code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert by_runtime[1] == by_runtime[0]
    assert by_runtime[0].code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert by_runtime[0].details and "timeout 1s exceeded" in by_runtime[0].details


@pytest.mark.timeout(30)
async def test_a_burst_of_500_connects_is_all_accepted(sock_dir: pathlib.Path) -> None:
    # Issue 11.9: with uvloop's default listen queue (100) the rest got EAGAIN. No upstream
    # listens here: each accepted connection is closed by the proxy, which the client sees as EOF.
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "absent.sock")
    await relay.start()
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(500)]
    try:
        for sock in socks:
            sock.setblocking(False)
        # All at once: the loop accepts nothing until this line has run.
        results = [sock.connect_ex(str(sock_dir / "p.sock")) for sock in socks]
        assert results.count(0) == 500, f"refused: {sorted(set(results) - {0})}"
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(10)
        assert await asyncio.to_thread(lambda: [s.recv(1) for s in socks]) == [b""] * 500
    finally:
        for sock in socks:
            sock.close()
        await relay.stop(0)
