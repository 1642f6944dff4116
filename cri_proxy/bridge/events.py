"""GetContainerEvents for runtimes that lack it: relist, diff, and send what changed.

One poller per bridge runs while at least one stream is open: every `period` it lists the
containers (ListContainers, in whatever version the runtime speaks), compares states with
the previous list, and for each change builds the v1 `ContainerEventResponse` a v1 runtime
would send (CREATED, STARTED, STOPPED, DELETED; `pod_sandbox_status` and
`containers_statuses` of the pod, the event's container first). The first list after the
poller starts is the baseline: like a real runtime, a new stream sees only later changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.bridge.channels import Upstream

log = logging.getLogger(__name__)

RUNNING, EXITED = v1.CONTAINER_RUNNING, v1.CONTAINER_EXITED
QUEUE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Seen:
    state: int
    pod_id: str


class EventEmulator:
    def __init__(self, upstream: Upstream, api: Callable[[], str | None], period: float) -> None:
        self.upstream = upstream
        self.api = api  # the version the bridge speaks to the runtime now
        self.period = period
        self._queues: set[asyncio.Queue[bytes]] = set()
        self._task: asyncio.Task[None] | None = None
        self._seen: dict[str, Seen] | None = None

    @property
    def baseline_taken(self) -> bool:
        """Whether the poller has its first list: only the changes after it become events."""
        return self._seen is not None

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._seen = None
            self._task = asyncio.create_task(self._run(), name="bridge-events")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._queues.discard(queue)
        if not self._queues and self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self._queues.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        log.info("emulating container events from %s every %.3gs", self.upstream.target, self.period)
        while True:
            try:
                await self.poll()
            except grpc.aio.AioRpcError as exc:
                log.info("container events: relist failed (%s %s); trying again next period",
                         exc.code().name, exc.details())
            except Exception:
                log.exception("container events: relist failed")
            await asyncio.sleep(self.period)

    async def _call(self, method: str, request: bytes) -> bytes:
        api = self.api() or "v1"
        call = self.upstream.channel.unary_unary(f"/runtime.{api}.RuntimeService/{method}", None, None)
        reply: bytes = await call(request, timeout=max(self.period * 5, 5.0))
        return reply

    async def poll(self) -> None:
        """One relist: send the events for what changed since the last one."""
        listed = v1.ListContainersResponse.FromString(
            await self._call("ListContainers", v1.ListContainersRequest().SerializeToString()))
        now = {c.id: Seen(c.state, c.pod_sandbox_id) for c in listed.containers}
        before, self._seen = self._seen, now
        if before is None:
            return
        changes: list[tuple[str, str, list[int]]] = []  # container, pod, event types
        for cid, seen in now.items():
            old = before.get(cid)
            types = _transitions(old.state if old else None, seen.state)
            if types:
                changes.append((cid, seen.pod_id, types))
        for cid, old in before.items():
            if cid not in now:
                types = ([int(v1.CONTAINER_STOPPED_EVENT)] if old.state == RUNNING else []) + [
                    int(v1.CONTAINER_DELETED_EVENT)]
                changes.append((cid, old.pod_id, types))
        if changes:
            await self._send(changes, listed)

    async def _send(self, changes: list[tuple[str, str, list[int]]],
                    listed: v1.ListContainersResponse) -> None:
        pods: dict[str, v1.PodSandboxStatus | None] = {}
        statuses: dict[str, v1.ContainerStatus | None] = {}
        by_pod: dict[str, list[str]] = {}
        for c in listed.containers:
            by_pod.setdefault(c.pod_sandbox_id, []).append(c.id)
        for cid, pod_id, types in changes:
            if pod_id not in pods:
                pods[pod_id] = await self._pod_status(pod_id)
            members = [cid] + [c for c in by_pod.get(pod_id, []) if c != cid]
            found = [await self._status(c, statuses) for c in members]
            for kind in types:
                event = v1.ContainerEventResponse(
                    container_id=cid, container_event_type=kind,  # type: ignore[arg-type]
                    created_at=time.time_ns(),
                    containers_statuses=[s for s in found if s is not None])
                pod = pods[pod_id]
                if pod is not None:
                    event.pod_sandbox_status.CopyFrom(pod)
                self._publish(event.SerializeToString())

    async def _pod_status(self, pod_id: str) -> v1.PodSandboxStatus | None:
        try:
            data = await self._call("PodSandboxStatus",
                                    v1.PodSandboxStatusRequest(pod_sandbox_id=pod_id).SerializeToString())
        except grpc.aio.AioRpcError:
            return None
        return v1.PodSandboxStatusResponse.FromString(data).status

    async def _status(self, cid: str, cache: dict[str, v1.ContainerStatus | None]) -> v1.ContainerStatus | None:
        if cid not in cache:
            try:
                data = await self._call("ContainerStatus",
                                        v1.ContainerStatusRequest(container_id=cid).SerializeToString())
                cache[cid] = v1.ContainerStatusResponse.FromString(data).status
            except grpc.aio.AioRpcError:
                cache[cid] = None
        return cache[cid]

    def _publish(self, data: bytes) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                log.warning("container events: a stream is %d events behind; dropping one", QUEUE_LIMIT)


def _transitions(old: int | None, new: int) -> list[int]:
    """The events between two observed states of one container (None: not seen before)."""
    order: list[int] = [v1.CONTAINER_CREATED, RUNNING, EXITED]
    events: list[int] = [v1.CONTAINER_CREATED_EVENT, v1.CONTAINER_STARTED_EVENT,
                         v1.CONTAINER_STOPPED_EVENT]
    if new not in order:
        return []  # CONTAINER_UNKNOWN: say nothing until it is known
    start = 0 if old is None or old not in order else order.index(old) + 1
    return events[start:order.index(new) + 1]
