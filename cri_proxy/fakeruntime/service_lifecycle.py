"""RuntimeService, part one: pod and container lifecycle, lists, statuses and events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

from cri_proxy.fakeruntime import convert
from cri_proxy.fakeruntime.config import Context, ServicerBase
from cri_proxy.fakeruntime.state import Container, Pod
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class LifecycleServicer(ServicerBase):
    """Methods are named as the CRI names them; each takes and returns v1 messages."""

    def _container(self, ctr: Container) -> v1.Container:
        msg = convert.container_proto(ctr)
        if self.api == "v1alpha2":
            msg.image_ref = ctr.image_id  # v1alpha2's image_ref was the image id
        return msg

    def _container_status(self, ctr: Container) -> v1.ContainerStatus:
        msg = convert.container_status_proto(ctr)
        if self.api == "v1alpha2":
            msg.image_ref = ctr.image_id
        return msg

    # --- pods ---------------------------------------------------------------------------

    async def RunPodSandbox(
        self, request: v1.RunPodSandboxRequest, context: Context
    ) -> v1.RunPodSandboxResponse:
        pod = self.state.run_pod(request.config, request.runtime_handler)
        return v1.RunPodSandboxResponse(pod_sandbox_id=pod.id)

    async def StopPodSandbox(
        self, request: v1.StopPodSandboxRequest, context: Context
    ) -> v1.StopPodSandboxResponse:
        self.state.stop_pod(request.pod_sandbox_id)
        return v1.StopPodSandboxResponse()

    async def RemovePodSandbox(
        self, request: v1.RemovePodSandboxRequest, context: Context
    ) -> v1.RemovePodSandboxResponse:
        self.state.remove_pod(request.pod_sandbox_id)
        return v1.RemovePodSandboxResponse()

    async def PodSandboxStatus(
        self, request: v1.PodSandboxStatusRequest, context: Context
    ) -> v1.PodSandboxStatusResponse:
        pod = self.state.get_pod(request.pod_sandbox_id)
        return self._pod_status_response(pod, request.verbose)

    def _pod_status_response(self, pod: Pod, verbose: bool) -> v1.PodSandboxStatusResponse:
        return v1.PodSandboxStatusResponse(
            status=convert.pod_status_proto(pod),
            info=convert.pod_info(pod) if verbose else {},
            containers_statuses=[
                self._container_status(c) for c in self.state.pod_containers(pod.id)
            ],
            timestamp=time.time_ns(),
        )

    async def ListPodSandbox(
        self, request: v1.ListPodSandboxRequest, context: Context
    ) -> v1.ListPodSandboxResponse:
        flt = request.filter if request.HasField("filter") else None
        pods = convert.filter_pods(self.state, flt)
        return v1.ListPodSandboxResponse(items=[convert.pod_proto(p) for p in pods])

    async def StreamPodSandboxes(
        self, request: v1.StreamPodSandboxesRequest, context: Context
    ) -> AsyncIterator[v1.StreamPodSandboxesResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = [convert.pod_proto(p) for p in convert.filter_pods(self.state, flt)]
        for part in chunks(items, self.options.stream_chunk_size):
            yield v1.StreamPodSandboxesResponse(pod_sandboxes=part)

    # --- containers ---------------------------------------------------------------------

    async def CreateContainer(
        self, request: v1.CreateContainerRequest, context: Context
    ) -> v1.CreateContainerResponse:
        ctr = self.state.create_container(request.pod_sandbox_id, request.config)
        return v1.CreateContainerResponse(container_id=ctr.id)

    async def StartContainer(
        self, request: v1.StartContainerRequest, context: Context
    ) -> v1.StartContainerResponse:
        self.state.start_container(request.container_id)
        return v1.StartContainerResponse()

    async def StopContainer(
        self, request: v1.StopContainerRequest, context: Context
    ) -> v1.StopContainerResponse:
        # A zero timeout means SIGKILL straight away (exit 137); otherwise the container
        # "handles" SIGTERM and exits cleanly.
        self.state.stop_container(request.container_id, 137 if request.timeout == 0 else 0)
        return v1.StopContainerResponse()

    async def RemoveContainer(
        self, request: v1.RemoveContainerRequest, context: Context
    ) -> v1.RemoveContainerResponse:
        self.state.remove_container(request.container_id)
        return v1.RemoveContainerResponse()

    async def ListContainers(
        self, request: v1.ListContainersRequest, context: Context
    ) -> v1.ListContainersResponse:
        flt = request.filter if request.HasField("filter") else None
        ctrs = convert.filter_containers(self.state, flt)
        return v1.ListContainersResponse(containers=[self._container(c) for c in ctrs])

    async def StreamContainers(
        self, request: v1.StreamContainersRequest, context: Context
    ) -> AsyncIterator[v1.StreamContainersResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = [self._container(c) for c in convert.filter_containers(self.state, flt)]
        for part in chunks(items, self.options.stream_chunk_size):
            yield v1.StreamContainersResponse(containers=part)

    async def ContainerStatus(
        self, request: v1.ContainerStatusRequest, context: Context
    ) -> v1.ContainerStatusResponse:
        ctr = self.state.get_container(request.container_id)
        info = {}
        if request.verbose:
            info = convert.container_info(ctr, self.state.pods.get(ctr.pod_id))
        return v1.ContainerStatusResponse(status=self._container_status(ctr), info=info)

    # --- events -------------------------------------------------------------------------

    async def GetContainerEvents(
        self, request: v1.GetEventsRequest, context: Context
    ) -> AsyncIterator[v1.ContainerEventResponse]:
        queue = self.state.subscribe()
        log.info("GetContainerEvents: stream opened (%d open)", self.state.event_listeners)
        try:
            while True:
                event, ctr, pod = await queue.get()
                yield v1.ContainerEventResponse(
                    container_id=ctr.id,
                    container_event_type=event,  # type: ignore[arg-type]
                    created_at=time.time_ns(),
                    pod_sandbox_status=convert.pod_status_proto(pod),
                    containers_statuses=[self._container_status(ctr)]
                    + [
                        self._container_status(c)
                        for c in self.state.pod_containers(pod.id)
                        if c.id != ctr.id
                    ],
                )
        except asyncio.CancelledError:
            log.info("GetContainerEvents: stream closed by the client")
            raise
        finally:
            self.state.unsubscribe(queue)
