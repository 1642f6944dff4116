"""Every CRI RPC answers through the proxy exactly as it does directly, against the fake runtime.

Each RPC of RuntimeService and ImageService, v1 and v1alpha2, is taken from the compiled
descriptors and called with raw bytes twice: straight on the fake runtime's socket and
through an in-process `RelayServer`. What a client can observe (status code, details,
initial and trailing metadata, every response message's bytes) must be equal. The few
answers that legitimately change between two back-to-back calls are listed in `VARYING`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.proxy.server import RelayServer
from tests.helpers.fakeruntime import (
    KUBELET_CHANNEL_OPTIONS,
    MIB,
    container_config,
    create_container,
    pod_config,
    run_pod,
)
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(20)

PACKAGES: dict[str, ModuleType] = {"v1": v1, "v1alpha2": v1alpha2}
BUSYBOX = "docker.io/library/busybox:latest"


def _rpcs(version: str) -> list[MethodDescriptor]:
    services = PACKAGES[version].DESCRIPTOR.services_by_name.values()
    return [method for service in services for method in service.methods]


ALL_RPCS = [(version, m) for version in PACKAGES for m in _rpcs(version)]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _rpc_id(item: tuple[str, MethodDescriptor]) -> str:
    return f"{item[0]}/{item[1].containing_service.name}/{item[1].name}"


def _version_of(method: MethodDescriptor) -> str:
    return method.containing_service.full_name.split(".")[1]


# Calls that change the runtime's state: two back-to-back calls answer differently (a new id,
# or FAILED_PRECONDITION the second time), so `test_lifecycle_*` runs them once, through the
# proxy, and checks their effect with reads that must agree directly and through the proxy.
MUTATING = frozenset({
    "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "UpdateContainerResources", "UpdatePodSandboxResources", "UpdateRuntimeConfig",
    "PullImage", "RemoveImage",
})
# A stream that never ends by itself: read until a short deadline (both ways alike).
ENDLESS = frozenset({"GetContainerEvents"})
ENDLESS_DEADLINE = 1.5

# The only answers allowed to differ between two back-to-back calls, and the fields that may:
# - `timestamp`: the time of the reply in ns (stats, PodSandboxStatus, ImageFsInfo);
# - `usage_core_nano_seconds`, `rx_bytes`, `tx_bytes`: cumulative counters of running
#   containers and pods, which grow with the time between the two calls;
# - `url`: Exec/Attach/PortForward answer a single-use URL whose last segment is a random
#   token; the rest of the URL (host, port, kind) must still be equal.
# Those fields are blanked (whether each is set still counts); the rest of each message, the
# status, the details and the metadata stay compared exactly.
_STATS_FIELDS = frozenset({"timestamp", "usage_core_nano_seconds", "rx_bytes", "tx_bytes"})
VARYING: dict[str, frozenset[str]] = {
    "PodSandboxStatus": frozenset({"timestamp"}),
    "ImageFsInfo": frozenset({"timestamp"}),
    "ContainerStats": _STATS_FIELDS,
    "ListContainerStats": _STATS_FIELDS,
    "StreamContainerStats": _STATS_FIELDS,
    "PodSandboxStats": _STATS_FIELDS,
    "ListPodSandboxStats": _STATS_FIELDS,
    "StreamPodSandboxStats": _STATS_FIELDS,
    "Exec": frozenset({"url"}),
    "Attach": frozenset({"url"}),
    "PortForward": frozenset({"url"}),
}


def _same(data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class Outcome:
    """Everything a client can observe of one call."""

    code: grpc.StatusCode
    details: str | None
    initial: tuple[Any, ...]
    trailing: tuple[Any, ...]
    messages: tuple[bytes, ...]


async def observe(ch: grpc.aio.Channel, path: str, request: bytes, *, stream: bool = False,
                  timeout: float = 5.0) -> Outcome:
    messages: list[bytes] = []
    call: Any
    if stream:
        call = ch.unary_stream(path, request_serializer=_same, response_deserializer=_same)(
            request, timeout=timeout)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for message in call:
                messages.append(message)
    else:
        call = ch.unary_unary(path, request_serializer=_same, response_deserializer=_same)(
            request, timeout=timeout)
        with contextlib.suppress(grpc.aio.AioRpcError):
            messages.append(await call)
    return Outcome(await call.code(), await call.details(), tuple(await call.initial_metadata() or ()),
                   tuple(await call.trailing_metadata() or ()), tuple(messages))


def _scrub(msg: Message, names: frozenset[str]) -> None:
    """Blank the named fields anywhere in `msg`, keeping which are set and a URL but its token."""
    for field, value in msg.ListFields():
        if field.name in names:
            if field.name == "url":
                setattr(msg, "url", value.rsplit("/", 1)[0] + "/TOKEN")
            elif field.message_type is not None:  # a UInt64Value counter
                msg.ClearField(field.name)
                getattr(msg, field.name).SetInParent()
            else:  # a time in ns
                setattr(msg, field.name, 1)
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _scrub(item, names)
        elif field.is_repeated:
            for item in value:
                _scrub(item, names)
        else:
            _scrub(value, names)


def normalized(method: MethodDescriptor, outcome: Outcome) -> Outcome:
    """`outcome` with the fields `VARYING` allows to differ cleared (unchanged for other RPCs)."""
    names = VARYING.get(method.name)
    if names is None:
        return outcome
    cls: type[Message] = getattr(PACKAGES[_version_of(method)], method.output_type.name)
    scrubbed = []
    for data in outcome.messages:
        msg = cls.FromString(data)
        _scrub(msg, names)
        scrubbed.append(msg.SerializeToString(deterministic=True))
    return replace(outcome, messages=tuple(scrubbed))


@dataclass
class Rig:
    runtime: FakeRuntimeServer
    relay: RelayServer
    direct: grpc.aio.Channel
    proxied: grpc.aio.Channel

    async def compare(self, method: MethodDescriptor, request: bytes) -> Outcome:
        """Call `method` directly, then through the proxy; assert both answers agree."""
        stream = method.server_streaming
        if method.name in ENDLESS:
            # Both at once, to wait for the deadline once; it is long enough that an immediate
            # answer (UNIMPLEMENTED) comes back through a busy proxy before it.
            direct, proxied = await asyncio.gather(*(
                observe(ch, _path(method), request, stream=stream, timeout=ENDLESS_DEADLINE)
                for ch in (self.direct, self.proxied)))
        else:
            direct = await observe(self.direct, _path(method), request, stream=stream)
            proxied = await observe(self.proxied, _path(method), request, stream=stream)
        assert normalized(method, proxied) == normalized(method, direct), _path(method)
        return direct


@contextlib.asynccontextmanager
async def rig(sock_dir: pathlib.Path, api: str = "both", **opts: Any) -> AsyncIterator[Rig]:
    """A fake runtime, a relay in front of it, and a kubelet-like channel to each."""
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api, **opts)  # type: ignore[arg-type]
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock")
    await relay.start()
    direct = grpc.aio.insecure_channel(runtime.address, options=KUBELET_CHANNEL_OPTIONS)
    proxied = grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=KUBELET_CHANNEL_OPTIONS)
    try:
        yield Rig(runtime, relay, direct, proxied)
    finally:
        await direct.close(None)
        await proxied.close(None)
        await relay.stop(0)
        await runtime.stop(None)


def _method(version: str, name: str) -> MethodDescriptor:
    return next(m for m in _rpcs(version) if m.name == name)


# --- every RPC, an empty request ------------------------------------------------------------


@pytest.mark.parametrize("version, method", ALL_RPCS, ids=[_rpc_id(r) for r in ALL_RPCS])
async def test_every_rpc_with_an_empty_request(sock_dir: pathlib.Path, version: str,
                                               method: MethodDescriptor) -> None:
    async with rig(sock_dir) as r:
        await r.compare(method, b"")


# --- every reading RPC, a realistic request -------------------------------------------------


@dataclass
class Ids:
    pod: str
    running: str  # a running container of `pod`
    created: str  # a created, never started container of `pod`
    exited: str  # a stopped container of `pod`


async def populate_through_proxy(r: Rig) -> Ids:
    rt = v1_grpc.RuntimeServiceStub(r.proxied)
    pod = await run_pod(rt, pod_config("web", team="a"))
    running = await create_container(rt, pod, container_config("app", BUSYBOX, tier="front"))
    await rt.StartContainer(v1.StartContainerRequest(container_id=running))
    created = await create_container(rt, pod, container_config("idle", BUSYBOX))
    exited = await create_container(rt, pod, container_config("done", BUSYBOX))
    await rt.StartContainer(v1.StartContainerRequest(container_id=exited))
    await rt.StopContainer(v1.StopContainerRequest(container_id=exited, timeout=10))
    return Ids(pod, running, created, exited)


def reading_requests(pkg: ModuleType, ids: Ids) -> dict[str, Callable[[], Message]]:
    """A request that means something for each RPC that does not change state."""
    busybox = pkg.ImageSpec(image=BUSYBOX)
    return {
        "Version": lambda: pkg.VersionRequest(version="0.1.0"),
        "Status": lambda: pkg.StatusRequest(verbose=True),
        "RuntimeConfig": lambda: pkg.RuntimeConfigRequest(),
        "PodSandboxStatus": lambda: pkg.PodSandboxStatusRequest(pod_sandbox_id=ids.pod, verbose=True),
        "ListPodSandbox": lambda: pkg.ListPodSandboxRequest(
            filter=pkg.PodSandboxFilter(label_selector={"team": "a"})),
        "StreamPodSandboxes": lambda: pkg.StreamPodSandboxesRequest(filter=pkg.PodSandboxFilter(id=ids.pod)),
        "ListContainers": lambda: pkg.ListContainersRequest(
            filter=pkg.ContainerFilter(pod_sandbox_id=ids.pod)),
        "StreamContainers": lambda: pkg.StreamContainersRequest(
            filter=pkg.ContainerFilter(pod_sandbox_id=ids.pod)),
        "ContainerStatus": lambda: pkg.ContainerStatusRequest(container_id=ids.running, verbose=True),
        "ReopenContainerLog": lambda: pkg.ReopenContainerLogRequest(container_id=ids.running),
        "ExecSync": lambda: pkg.ExecSyncRequest(
            container_id=ids.running, cmd=["sh", "-c", "hostname; env; cat /nope || exit 3"], timeout=5),
        "Exec": lambda: pkg.ExecRequest(container_id=ids.running, cmd=["sh"], stdin=True, stdout=True),
        "Attach": lambda: pkg.AttachRequest(container_id=ids.running, stdin=True, stdout=True),
        "PortForward": lambda: pkg.PortForwardRequest(pod_sandbox_id=ids.pod, port=[8080]),
        "ContainerStats": lambda: pkg.ContainerStatsRequest(container_id=ids.running),
        "ListContainerStats": lambda: pkg.ListContainerStatsRequest(
            filter=pkg.ContainerStatsFilter(pod_sandbox_id=ids.pod)),
        "StreamContainerStats": lambda: pkg.StreamContainerStatsRequest(
            filter=pkg.ContainerStatsFilter(pod_sandbox_id=ids.pod)),
        "PodSandboxStats": lambda: pkg.PodSandboxStatsRequest(pod_sandbox_id=ids.pod),
        "ListPodSandboxStats": lambda: pkg.ListPodSandboxStatsRequest(
            filter=pkg.PodSandboxStatsFilter(id=ids.pod)),
        "StreamPodSandboxStats": lambda: pkg.StreamPodSandboxStatsRequest(
            filter=pkg.PodSandboxStatsFilter(id=ids.pod)),
        "CheckpointContainer": lambda: pkg.CheckpointContainerRequest(
            container_id=ids.running, location="/tmp/checkpoint.tar", timeout=5),
        "ListMetricDescriptors": lambda: pkg.ListMetricDescriptorsRequest(),
        "ListPodSandboxMetrics": lambda: pkg.ListPodSandboxMetricsRequest(),
        "StreamPodSandboxMetrics": lambda: pkg.StreamPodSandboxMetricsRequest(),
        "ListImages": lambda: pkg.ListImagesRequest(filter=pkg.ImageFilter(image=busybox)),
        "StreamImages": lambda: pkg.StreamImagesRequest(),
        "ImageStatus": lambda: pkg.ImageStatusRequest(image=busybox, verbose=True),
        "ImageFsInfo": lambda: pkg.ImageFsInfoRequest(),
    }


READING_RPCS = [(v, m) for v, m in ALL_RPCS if m.name not in MUTATING | ENDLESS]


def test_every_rpc_is_covered_by_a_request_table() -> None:
    """A new RPC in the protos must get a realistic request here, or a place in MUTATING/ENDLESS."""
    ids = Ids("p", "r", "c", "e")
    for version, method in READING_RPCS:
        assert method.name in reading_requests(PACKAGES[version], ids), _rpc_id((version, method))
    assert set(VARYING) <= {m.name for _, m in READING_RPCS}


@pytest.mark.parametrize("version, method", READING_RPCS, ids=[_rpc_id(r) for r in READING_RPCS])
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


class Lifecycle:
    """Mutating calls go through the proxy; reads go both ways and must agree."""

    def __init__(self, r: Rig, version: str) -> None:
        self.r = r
        self.version = version
        self.pkg = PACKAGES[version]
        self.mutated: set[str] = set()

    async def mutate(self, name: str, request: Message) -> Any:
        method = _method(self.version, name)
        outcome = await observe(self.r.proxied, _path(method), request.SerializeToString())
        assert outcome.code == grpc.StatusCode.OK, (name, outcome.details)
        self.mutated.add(name)
        return getattr(self.pkg, method.output_type.name).FromString(outcome.messages[0])

    async def read(self, name: str, request: Message) -> Any:
        method = _method(self.version, name)
        direct = await self.r.compare(method, request.SerializeToString())
        assert direct.code == grpc.StatusCode.OK, (name, direct.details)
        return getattr(self.pkg, method.output_type.name).FromString(direct.messages[0])

    async def container_states(self, pod: str) -> dict[str, int]:
        flt = self.pkg.ContainerFilter(pod_sandbox_id=pod)
        reply = await self.read("ListContainers", self.pkg.ListContainersRequest(filter=flt))
        return {c.id: c.state for c in reply.containers}

    async def pod_states(self) -> dict[str, int]:
        reply = await self.read("ListPodSandbox", self.pkg.ListPodSandboxRequest())
        return {p.id: p.state for p in reply.items}


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
        if "UpdatePodSandboxResources" in {m.name for m in _rpcs(version)}:
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
            await r.compare(_method(version, name), request.SerializeToString())
    assert life.mutated == MUTATING & {m.name for m in _rpcs(version)}


# --- a runtime that serves one version only -------------------------------------------------


@pytest.mark.parametrize("api", ["v1", "v1alpha2"])
async def test_a_single_version_runtime_answers_alike(sock_dir: pathlib.Path, api: str) -> None:
    async with rig(sock_dir, api) as r:
        outcomes = await asyncio.gather(*(r.compare(m, b"") for _, m in ALL_RPCS))
        version = _method(api, "Version")
        assert (await r.compare(version, b"")).code == grpc.StatusCode.OK
    for (version_name, method), outcome in zip(ALL_RPCS, outcomes):
        if version_name != api:
            assert outcome.code == grpc.StatusCode.UNIMPLEMENTED, _rpc_id((version_name, method))


async def test_container_events_unimplemented_alike(sock_dir: pathlib.Path) -> None:
    async with rig(sock_dir, container_events=False) as r:
        outcome = await r.compare(_method("v1", "GetContainerEvents"), b"")
    assert outcome.code == grpc.StatusCode.UNIMPLEMENTED


# --- streams ----------------------------------------------------------------------------------


async def test_container_events_stream_through_the_proxy(sock_dir: pathlib.Path) -> None:
    path = _path(_method("v1", "GetContainerEvents"))

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
        calls = [ch.unary_stream(path, request_serializer=_same, response_deserializer=_same)(b"")
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
    streams = [m for m in _rpcs("v1") if m.server_streaming and m.name not in ENDLESS]
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
    method = _method("v1", "ListContainers")
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
    path = _path(_method("v1", "ExecSync"))
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


# --- the real CLI with a separate image endpoint ----------------------------------------------


async def test_cli_sends_image_calls_to_the_image_endpoint(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "both")
    images = await start_fake_runtime(f"unix://{sock_dir}/img.sock", "both")
    proxy = ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", "--image-endpoint", f"unix://{sock_dir}/img.sock")
    await asyncio.to_thread(proxy.start)
    listen = f"unix://{sock_dir}/p.sock"
    # One connection per service, as the kubelet dials them; plus the direct ones. grpc-core
    # would otherwise share one connection between channels to the same address.
    options = [*KUBELET_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    channels = {name: grpc.aio.insecure_channel(address, options=options) for name, address in [
        ("runtime-svc", listen), ("image-svc", listen), ("runtime", runtime.address), ("images", images.address)]}
    try:
        pull = _method("v1", "PullImage")
        ref = v1.PullImageRequest(image=v1.ImageSpec(image="quay.io/cri-proxy/only-on-image-runtime:2"))
        pulled = await observe(channels["image-svc"], _path(pull), ref.SerializeToString())
        assert pulled.code == grpc.StatusCode.OK, pulled.details
        image_id = v1.PullImageResponse.FromString(pulled.messages[0]).image_ref
        assert images.state.images.find(image_id) and not runtime.state.images.find(image_id)

        for method in (_method("v1", "ListImages"), _method("v1alpha2", "ListImages")):
            on_images = await observe(channels["images"], _path(method), b"")
            assert image_id.encode() in on_images.messages[0]
            assert image_id.encode() not in (await observe(channels["runtime"], _path(method), b"")).messages[0]
            assert await observe(channels["image-svc"], _path(method), b"") == on_images

        rt = v1_grpc.RuntimeServiceStub(channels["runtime-svc"])
        pod = await run_pod(rt)
        assert pod in runtime.state.pods and not images.state.pods
        for method in (_method("v1", "ListPodSandbox"), _method("v1", "Version")):
            direct = await observe(channels["runtime"], _path(method), b"")
            assert await observe(channels["runtime-svc"], _path(method), b"") == direct
        # A connection carries one service (split.py): an image call on the runtime
        # connection is refused by the proxy, saying why, rather than sent to the wrong runtime.
        status = v1.ImageStatusRequest(image=v1.ImageSpec(image=image_id)).SerializeToString()
        refused = await observe(channels["runtime-svc"], _path(_method("v1", "ImageStatus")), status)
        assert refused.code == grpc.StatusCode.UNIMPLEMENTED and "separate connection" in (refused.details or "")
    finally:
        for ch in channels.values():
            await ch.close(None)
        code = await asyncio.to_thread(proxy.stop)
        await runtime.stop(None)
        await images.stop(None)
    assert code == 0, proxy.log()


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
