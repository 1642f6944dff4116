"""cri_proxy/fakeruntime/convert.py: the List* filters (ids and prefixes, states, label selectors), over real gRPC."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import container_config, pod_config, run_pod, serve

pytestmark = pytest.mark.timeout(10)


async def test_list_filters(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        pa = await run_pod(rt, pod_config("a", app="x"))
        pb = await run_pod(rt, pod_config("b", app="y"))
        await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pb))

        async def pods(flt: v1.PodSandboxFilter) -> set[str]:
            return {p.id for p in (await rt.ListPodSandbox(v1.ListPodSandboxRequest(filter=flt))).items}

        assert await pods(v1.PodSandboxFilter()) == {pa, pb}
        assert await pods(v1.PodSandboxFilter(id=pa)) == {pa}
        assert await pods(v1.PodSandboxFilter(id=pb[:12])) == {pb}
        assert await pods(v1.PodSandboxFilter(state=v1.PodSandboxStateValue(state=v1.SANDBOX_READY))) == {pa}
        assert await pods(v1.PodSandboxFilter(state=v1.PodSandboxStateValue(state=v1.SANDBOX_NOTREADY))) == {pb}
        assert await pods(v1.PodSandboxFilter(label_selector={"app": "y"})) == {pb}
        assert await pods(v1.PodSandboxFilter(label_selector={"app": "z"})) == set()

        c1 = (await rt.CreateContainer(v1.CreateContainerRequest(
            pod_sandbox_id=pa, config=container_config("one", tier="front")))).container_id
        c2 = (await rt.CreateContainer(v1.CreateContainerRequest(
            pod_sandbox_id=pa, config=container_config("two", tier="back")))).container_id
        await rt.StartContainer(v1.StartContainerRequest(container_id=c2))

        async def ctrs(flt: v1.ContainerFilter) -> set[str]:
            return {c.id for c in (await rt.ListContainers(v1.ListContainersRequest(filter=flt))).containers}

        assert await ctrs(v1.ContainerFilter(pod_sandbox_id=pa)) == {c1, c2}
        assert await ctrs(v1.ContainerFilter(pod_sandbox_id=pb)) == set()
        assert await ctrs(v1.ContainerFilter(id=c1)) == {c1}
        assert await ctrs(v1.ContainerFilter(state=v1.ContainerStateValue(state=v1.CONTAINER_CREATED))) == {c1}
        assert await ctrs(v1.ContainerFilter(state=v1.ContainerStateValue(state=v1.CONTAINER_RUNNING))) == {c2}
        assert await ctrs(v1.ContainerFilter(label_selector={"tier": "back"})) == {c2}
        assert await ctrs(v1.ContainerFilter(pod_sandbox_id=pa, label_selector={"tier": "front"})) == {c1}
