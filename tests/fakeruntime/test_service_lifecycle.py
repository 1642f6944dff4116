"""The fake runtime's server-streaming RPCs and replies near the kubelet's 16 MiB limit (stats: test_stats.py)."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest

from cri_proxy.fakeruntime import STATS_PADDING_ANNOTATION
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import (
    MIB,
    container_config,
    create_container,
    pod_config,
    run_pod,
    serve,
)

pytestmark = pytest.mark.timeout(15)


async def test_container_events_follow_the_lifecycle(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1") as (server, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        streams = [rt.GetContainerEvents(v1.GetEventsRequest()) for _ in range(2)]
        # No headers come before the first event (as with containerd), so wait for the
        # server side to subscribe rather than for the call's initial metadata.
        while server.state.event_listeners < 2:
            await asyncio.sleep(0.01)
        pod_id = await run_pod(rt, pod_config())
        req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config())
        ctr_id = (await rt.CreateContainer(req)).container_id
        await rt.StartContainer(v1.StartContainerRequest(container_id=ctr_id))
        await rt.StopContainer(v1.StopContainerRequest(container_id=ctr_id, timeout=1))
        await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr_id))
        want = [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT,
                v1.CONTAINER_STOPPED_EVENT, v1.CONTAINER_DELETED_EVENT]
        for stream in streams:
            got = [await asyncio.wait_for(stream.read(), 2) for _ in want]
            assert [e.container_event_type for e in got] == want
            assert all(e.container_id == ctr_id and e.pod_sandbox_status.id == pod_id for e in got)
            assert got[1].containers_statuses[0].state == v1.CONTAINER_RUNNING
            assert got[2].containers_statuses[0].state == v1.CONTAINER_EXITED
            stream.cancel()
        while server.state.event_listeners:
            await asyncio.sleep(0.01)


async def test_container_events_can_be_unimplemented(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, container_events=False) as (_, ch):
        stream = v1_grpc.RuntimeServiceStub(ch).GetContainerEvents(v1.GetEventsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_stream_rpcs_send_lists_in_chunks(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1", stream_chunk_size=100) as (server, ch):
        ids = server.runtime.populate(250, pods=3)
        rt = v1_grpc.RuntimeServiceStub(ch)
        sizes = [len(m.containers) async for m in rt.StreamContainers(v1.StreamContainersRequest())]
        assert sizes == [100, 100, 50]
        got = {c.id async for m in rt.StreamContainers(v1.StreamContainersRequest()) for c in m.containers}
        assert got == set(ids)
        flt = v1.ContainerFilter(id=ids[0])
        one = [m async for m in rt.StreamContainers(v1.StreamContainersRequest(filter=flt))]
        assert [[c.id for c in m.containers] for m in one] == [[ids[0]]]
        pods = [m async for m in rt.StreamPodSandboxes(v1.StreamPodSandboxesRequest())]
        assert sum(len(m.pod_sandboxes) for m in pods) == 3
        stats = [m async for m in rt.StreamContainerStats(v1.StreamContainerStatsRequest())]
        assert [len(m.container_stats) for m in stats] == [100, 100, 50]
        pstats = [m async for m in rt.StreamPodSandboxStats(v1.StreamPodSandboxStatsRequest())]
        assert sum(len(m.pod_sandbox_stats) for m in pstats) == 3
        images = [m async for m in v1_grpc.ImageServiceStub(ch).StreamImages(v1.StreamImagesRequest())]
        assert sum(len(m.images) for m in images) == 2
        metrics = [m async for m in rt.StreamPodSandboxMetrics(v1.StreamPodSandboxMetricsRequest())]
        assert metrics == []


async def test_reply_of_15_mib_passes_and_17_mib_does_not(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (server, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        server.runtime.populate(1500, annotation_bytes=10_000)
        reply = await rt.ListContainers(v1.ListContainersRequest())
        assert len(reply.containers) == 1500
        assert 14 * MIB < reply.ByteSize() < 16 * MIB
        server.runtime.populate(200, annotation_bytes=10_000)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.ListContainers(v1.ListContainersRequest())
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # past the kubelet's limit


async def test_request_and_stats_reply_of_15_mib(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        pod_id = await run_pod(rt, pod_config())
        cfg = container_config()
        cfg.annotations["big"] = "y" * (15 * MIB)
        req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg)
        ctr_id = (await rt.CreateContainer(req)).container_id
        status = await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr_id))
        assert len(status.status.annotations["big"]) == 15 * MIB
        small = container_config("padded")
        small.annotations[STATS_PADDING_ANNOTATION] = str(15 * MIB)
        padded = await create_container(rt, pod_id, small)
        await rt.StartContainer(v1.StartContainerRequest(container_id=padded))
        stats = await rt.ListContainerStats(v1.ListContainerStatsRequest(
            filter=v1.ContainerStatsFilter(id=padded)))
        assert 15 * MIB < stats.ByteSize() < 16 * MIB


async def test_populate_at_start(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, populate_containers=30, populate_annotation_bytes=1000) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        ctrs = (await rt.ListContainers(v1.ListContainersRequest())).containers
        assert len(ctrs) == 30 and all(c.state == v1.CONTAINER_RUNNING for c in ctrs)
        assert all(len(c.annotations["fake.cri-proxy.io/padding"]) == 1000 for c in ctrs)
        assert len((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items) == 3
