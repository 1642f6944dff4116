"""GetContainerEvents emulated by the bridge for runtimes without it, compared with a runtime
that has it."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from tests.helpers.bridge import Client, bridged, recorded, until

pytestmark = pytest.mark.timeout(60)

PERIOD = 0.2
C = v1.ContainerEventType


def open_events(channel: grpc.aio.Channel) -> Any:
    return channel.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents",
                                request_serializer=v1.GetEventsRequest.SerializeToString,
                                response_deserializer=v1.ContainerEventResponse.FromString)(
        v1.GetEventsRequest())


async def drive(client: Client, streams: list[Any], subscribed: Callable[[], bool]) -> list[list[tuple[Any, float]]]:
    """One container's life, once `subscribed()`, pausing between steps; each stream's events
    with their delay: from the step's answer to when the event was made (`created_at`), so
    that what a loaded machine adds to the call and to the event's delivery is not counted."""
    got: list[list[tuple[Any, float]]] = [[] for _ in streams]
    assert await until(subscribed), "the event streams were never subscribed"
    cfg = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}
    pod_id = (await client.call("RunPodSandbox", config=cfg)).pod_sandbox_id
    steps = [("CreateContainer", {"pod_sandbox_id": pod_id, "sandbox_config": cfg, "config": {
        "metadata": {"name": "c"}, "image": {"image": "docker.io/library/busybox:latest"}}})]
    cid = ""
    for i, kind in enumerate(("CreateContainer", "StartContainer", "StopContainer", "RemoveContainer")):
        fields = steps[0][1] if i == 0 else {"container_id": cid}
        reply = await client.call(kind, **fields)
        answered_ns = time.time_ns()
        cid = cid or reply.container_id
        for stream, events in zip(streams, got, strict=True):
            event = await asyncio.wait_for(stream.read(), 10)  # the delay is checked below
            events.append((event, (event.created_at - answered_ns) / 1e9))
    return got


def check(events: list[tuple[Any, float]], emulated: bool) -> None:
    kinds = [e.container_event_type for e, _ in events]
    assert kinds == [C.CONTAINER_CREATED_EVENT, C.CONTAINER_STARTED_EVENT,
                     C.CONTAINER_STOPPED_EVENT, C.CONTAINER_DELETED_EVENT]
    cid = events[0][0].container_id
    assert all(e.container_id == cid for e, _ in events)
    states = [v1.CONTAINER_CREATED, v1.CONTAINER_RUNNING, v1.CONTAINER_EXITED]
    for (event, delay), state in zip(events[:3], states, strict=False):
        assert event.pod_sandbox_status.id and event.pod_sandbox_status.metadata.name == "p"
        assert event.containers_statuses[0].id == cid
        assert event.containers_statuses[0].state == state
        assert event.created_at > 0
        if emulated:
            assert delay <= PERIOD + 0.15  # within one relist period


@pytest.mark.parametrize("runtime_api", ["v1alpha2", "v1"])
async def test_events_emulated_for_runtime_without_them(sock_dir: pathlib.Path, runtime_api: str) -> None:
    async with bridged(sock_dir, runtime_api, container_events=False, emulate_events=True,
                       events_period=PERIOD) as (rt, bridge, sink, channel):
        assert bridge.source.apis.events == "missing"
        streams = [open_events(channel), open_events(channel)]  # each open stream gets them all
        # The emulator's first relist is its baseline: a change made before it is no event.
        got = await drive(Client(channel, "v1"), streams, lambda: bridge.events.baseline_taken)
        for events in got:
            check(events, emulated=True)
        for stream in streams:
            stream.cancel()
        calls = await recorded(sink, 6)
        events_calls = [c for c in calls if c.method == "GetContainerEvents"]
        assert len(events_calls) == 2 and all(len(c.messages) == 5 for c in events_calls)
        assert any("emulated" in n for n in events_calls[0].notes)


async def test_native_events_are_forwarded_not_emulated(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1", container_events=True, emulate_events=True,
                       events_period=PERIOD) as (rt, bridge, sink, channel):
        assert bridge.source.apis.events == "native"
        stream = open_events(channel)
        got = await drive(Client(channel, "v1"), [stream], lambda: rt.state.event_listeners == 1)
        check(got[0], emulated=False)
        stream.cancel()
        calls = await recorded(sink, 6)
        assert not any("emulated" in n for c in calls for n in c.notes)


async def test_events_unimplemented_without_emulation(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (_, _bridge, _sink, channel):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await open_events(channel).read()
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
