"""What the every-RPC tests send through the relay (tests/proxy/test_server.py): a runtime
populated through the proxy (`Ids`), a request that means something for each RPC that does not
change state, and a lifecycle whose mutating calls go through the proxy while its reads go both
ways and must agree (tests/helpers/alike.py's `Rig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import Message

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.alike import PACKAGES, Rig, method_of, observe, rpc_path
from tests.helpers.fakeruntime import (
    container_config,
    create_container,
    pod_config,
    run_pod,
)

BUSYBOX = "docker.io/library/busybox:latest"


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


class Lifecycle:
    """Mutating calls go through the proxy; reads go both ways and must agree."""

    def __init__(self, r: Rig, version: str) -> None:
        self.r = r
        self.version = version
        self.pkg = PACKAGES[version]
        self.mutated: set[str] = set()

    async def mutate(self, name: str, request: Message) -> Any:
        method = method_of(self.version, name)
        outcome = await observe(self.r.proxied, rpc_path(method), request.SerializeToString())
        assert outcome.code == grpc.StatusCode.OK, (name, outcome.details)
        self.mutated.add(name)
        return getattr(self.pkg, method.output_type.name).FromString(outcome.messages[0])

    async def read(self, name: str, request: Message) -> Any:
        method = method_of(self.version, name)
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
