"""cri_proxy/fakeruntime/stats.py: stats that are plausible and advance, over real gRPC."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import serve

pytestmark = pytest.mark.timeout(15)


async def test_stats_are_plausible_and_advance(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (server, ch):
        [ctr_id] = server.runtime.populate(1)
        rt = v1_grpc.RuntimeServiceStub(ch)
        first = (await rt.ContainerStats(v1.ContainerStatsRequest(container_id=ctr_id))).stats
        await asyncio.sleep(0.05)
        second = (await rt.ContainerStats(v1.ContainerStatsRequest(container_id=ctr_id))).stats
        assert second.cpu.usage_core_nano_seconds.value > first.cpu.usage_core_nano_seconds.value
        assert second.memory.working_set_bytes.value == first.memory.working_set_bytes.value > 0
        assert second.cpu.timestamp > first.cpu.timestamp
        pod_id = (await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items[0].id
        pod = (await rt.PodSandboxStats(v1.PodSandboxStatsRequest(pod_sandbox_id=pod_id))).stats
        assert [c.attributes.id for c in pod.linux.containers] == [ctr_id]
        assert pod.linux.memory.working_set_bytes.value > second.memory.working_set_bytes.value
        listed = await rt.ListPodSandboxStats(v1.ListPodSandboxStatsRequest(
            filter=v1.PodSandboxStatsFilter(id=pod_id)))
        assert [s.attributes.id for s in listed.stats] == [pod_id]
        by_label = await rt.ListContainerStats(v1.ListContainerStatsRequest(
            filter=v1.ContainerStatsFilter(label_selector={"fake.cri-proxy.io/bulk": "true"})))
        assert [s.attributes.id for s in by_label.stats] == [ctr_id]
        assert not (await rt.ListMetricDescriptors(v1.ListMetricDescriptorsRequest())).descriptors
