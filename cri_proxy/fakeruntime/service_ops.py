"""RuntimeService, part two: runtime status and config, exec, stats, and the v1 extras."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import grpc

from cri_proxy.fakeruntime import convert, stats
from cri_proxy.fakeruntime.config import Context, ServicerBase
from cri_proxy.fakeruntime.execsync import ExecEnv, run_command
from cri_proxy.fakeruntime.service_lifecycle import chunks
from cri_proxy.fakeruntime.state import Container, FakeRuntimeError
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)

RUNTIME_NAME = "cri-proxy-fake"
RUNTIME_VERSION = "0.1.0"


class OperationsServicer(ServicerBase):
    """Methods are named as the CRI names them; each takes and returns v1 messages."""

    pod_cidr = ""

    def _running(self, container_id: str) -> Container:
        ctr = self.state.get_container(container_id)
        if ctr.state != v1.CONTAINER_RUNNING:
            raise FakeRuntimeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"container is in {v1.ContainerState.Name(ctr.state)} state",
            )
        return ctr

    # --- runtime ------------------------------------------------------------------------

    async def Version(self, request: v1.VersionRequest, context: Context) -> v1.VersionResponse:
        return v1.VersionResponse(
            version="0.1.0",
            runtime_name=RUNTIME_NAME,
            runtime_version=RUNTIME_VERSION,
            runtime_api_version=self.api,
        )

    async def Status(self, request: v1.StatusRequest, context: Context) -> v1.StatusResponse:
        conditions = [
            v1.RuntimeCondition(type="RuntimeReady", status=True),
            v1.RuntimeCondition(type="NetworkReady", status=True),
        ]
        info = {}
        if request.verbose:
            info["config"] = json.dumps(
                {"cgroupDriver": self.options.cgroup_driver, "podCIDR": self.pod_cidr,
                 "containerEvents": self.options.container_events}
            )
        features = v1.RuntimeHandlerFeatures(
            recursive_read_only_mounts=False, user_namespaces=False
        )
        return v1.StatusResponse(
            status=v1.RuntimeStatus(conditions=conditions),
            info=info,
            runtime_handlers=[v1.RuntimeHandler(name="", features=features),
                              v1.RuntimeHandler(name="runc", features=features)],
        )

    async def UpdateRuntimeConfig(
        self, request: v1.UpdateRuntimeConfigRequest, context: Context
    ) -> v1.UpdateRuntimeConfigResponse:
        self.pod_cidr = request.runtime_config.network_config.pod_cidr
        return v1.UpdateRuntimeConfigResponse()

    async def RuntimeConfig(
        self, request: v1.RuntimeConfigRequest, context: Context
    ) -> v1.RuntimeConfigResponse:
        driver = v1.SYSTEMD if self.options.cgroup_driver == "systemd" else v1.CGROUPFS
        return v1.RuntimeConfigResponse(linux=v1.LinuxRuntimeConfiguration(cgroup_driver=driver))

    # --- exec and streaming -------------------------------------------------------------

    async def ExecSync(self, request: v1.ExecSyncRequest, context: Context) -> v1.ExecSyncResponse:
        ctr = self._running(request.container_id)
        pod = self.state.get_pod(ctr.pod_id)
        cfg = ctr.config
        env = ExecEnv(
            hostname=pod.config.hostname or pod.config.metadata.name,
            env={kv.key: kv.value.decode(errors="replace") for kv in cfg.envs},
            working_dir=cfg.working_dir or "/",
        )
        run = run_command(list(request.cmd), env)
        try:
            if request.timeout > 0:
                result = await asyncio.wait_for(run, request.timeout)
            else:
                result = await run
        except TimeoutError:
            raise FakeRuntimeError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"timeout {request.timeout}s exceeded: context deadline exceeded",
            ) from None
        return v1.ExecSyncResponse(
            stdout=result.stdout, stderr=result.stderr, exit_code=result.exit_code
        )

    async def Exec(self, request: v1.ExecRequest, context: Context) -> v1.ExecResponse:
        self._running(request.container_id)
        if not request.cmd:
            raise FakeRuntimeError(grpc.StatusCode.INVALID_ARGUMENT, "cmd must not be empty")
        return v1.ExecResponse(url=self.streaming_url("exec"))

    async def Attach(self, request: v1.AttachRequest, context: Context) -> v1.AttachResponse:
        self._running(request.container_id)
        return v1.AttachResponse(url=self.streaming_url("attach"))

    async def PortForward(
        self, request: v1.PortForwardRequest, context: Context
    ) -> v1.PortForwardResponse:
        self.state.get_pod(request.pod_sandbox_id)
        return v1.PortForwardResponse(url=self.streaming_url("portforward"))

    # --- containers: resources, logs, checkpoints ---------------------------------------

    async def UpdateContainerResources(
        self, request: v1.UpdateContainerResourcesRequest, context: Context
    ) -> v1.UpdateContainerResourcesResponse:
        ctr = self.state.get_container(request.container_id)
        if ctr.state not in (v1.CONTAINER_CREATED, v1.CONTAINER_RUNNING):
            raise FakeRuntimeError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'container "{ctr.id}" is in {v1.ContainerState.Name(ctr.state)} state',
            )
        if request.HasField("linux"):
            ctr.resources.CopyFrom(request.linux)
        return v1.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(
        self, request: v1.ReopenContainerLogRequest, context: Context
    ) -> v1.ReopenContainerLogResponse:
        self._running(request.container_id)
        return v1.ReopenContainerLogResponse()

    async def CheckpointContainer(
        self, request: v1.CheckpointContainerRequest, context: Context
    ) -> v1.CheckpointContainerResponse:
        # Nothing is written to `location`: the checkpoint is only acknowledged.
        self._running(request.container_id)
        return v1.CheckpointContainerResponse()

    async def UpdatePodSandboxResources(
        self, request: v1.UpdatePodSandboxResourcesRequest, context: Context
    ) -> v1.UpdatePodSandboxResourcesResponse:
        self.state.get_pod(request.pod_sandbox_id)
        return v1.UpdatePodSandboxResourcesResponse()

    # --- stats and metrics --------------------------------------------------------------

    async def ContainerStats(
        self, request: v1.ContainerStatsRequest, context: Context
    ) -> v1.ContainerStatsResponse:
        ctr = self.state.get_container(request.container_id)
        return v1.ContainerStatsResponse(stats=stats.container_stats(ctr))

    async def ListContainerStats(
        self, request: v1.ListContainerStatsRequest, context: Context
    ) -> v1.ListContainerStatsResponse:
        flt = request.filter if request.HasField("filter") else None
        ctrs = convert.filter_stats_containers(self.state, flt)
        return v1.ListContainerStatsResponse(stats=[stats.container_stats(c) for c in ctrs])

    async def StreamContainerStats(
        self, request: v1.StreamContainerStatsRequest, context: Context
    ) -> AsyncIterator[v1.StreamContainerStatsResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = [stats.container_stats(c) for c in convert.filter_stats_containers(self.state, flt)]
        for part in chunks(items, self.options.stream_chunk_size):
            yield v1.StreamContainerStatsResponse(container_stats=part)

    async def PodSandboxStats(
        self, request: v1.PodSandboxStatsRequest, context: Context
    ) -> v1.PodSandboxStatsResponse:
        pod = self.state.get_pod(request.pod_sandbox_id)
        return v1.PodSandboxStatsResponse(stats=stats.pod_stats(self.state, pod))

    async def ListPodSandboxStats(
        self, request: v1.ListPodSandboxStatsRequest, context: Context
    ) -> v1.ListPodSandboxStatsResponse:
        flt = request.filter if request.HasField("filter") else None
        pods = convert.filter_stats_pods(self.state, flt)
        return v1.ListPodSandboxStatsResponse(stats=[stats.pod_stats(self.state, p) for p in pods])

    async def StreamPodSandboxStats(
        self, request: v1.StreamPodSandboxStatsRequest, context: Context
    ) -> AsyncIterator[v1.StreamPodSandboxStatsResponse]:
        flt = request.filter if request.HasField("filter") else None
        items = [stats.pod_stats(self.state, p) for p in convert.filter_stats_pods(self.state, flt)]
        for part in chunks(items, self.options.stream_chunk_size):
            yield v1.StreamPodSandboxStatsResponse(pod_sandbox_stats=part)

    async def ListMetricDescriptors(
        self, request: v1.ListMetricDescriptorsRequest, context: Context
    ) -> v1.ListMetricDescriptorsResponse:
        return v1.ListMetricDescriptorsResponse()

    async def ListPodSandboxMetrics(
        self, request: v1.ListPodSandboxMetricsRequest, context: Context
    ) -> v1.ListPodSandboxMetricsResponse:
        return v1.ListPodSandboxMetricsResponse()

    async def StreamPodSandboxMetrics(
        self, request: v1.StreamPodSandboxMetricsRequest, context: Context
    ) -> AsyncIterator[v1.StreamPodSandboxMetricsResponse]:
        for _ in ():  # no metrics: the stream ends at once
            yield v1.StreamPodSandboxMetricsResponse()
