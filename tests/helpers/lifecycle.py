"""A kubelet's pod lifecycle in either CRI version, with every outcome written down.

`lifecycle(channel, api)` drives the generated stubs of runtime.v1 or runtime.v1alpha2
(their messages have the same shape for these calls) and returns what a kubelet would
observe: states, counts, ExecSync output, and the status code of each call expected to
fail. Run directly against a runtime and through the proxy, the two lists must be equal.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import grpc

from cri_proxy.pb.runtime.v1 import api_pb2 as v1_pb2
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2_pb2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc

MODULES: dict[str, tuple[ModuleType, ModuleType]] = {"v1": (v1_pb2, v1_grpc), "v1alpha2": (v1alpha2_pb2, v1alpha2_grpc)}


async def _code(call: Any) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def lifecycle(channel: grpc.aio.Channel, api: str) -> list[str]:
    pb, stubs = MODULES[api]
    rt, img = stubs.RuntimeServiceStub(channel), stubs.ImageServiceStub(channel)
    seen = [(await rt.Version(pb.VersionRequest())).runtime_name]
    seen.append(str(bool((await img.ImageFsInfo(pb.ImageFsInfoRequest())).image_filesystems)))
    seen.append(str((await rt.Status(pb.StatusRequest())).status.conditions[0].status))
    image = pb.ImageSpec(image="docker.io/library/busybox:latest")
    seen.append(str(bool((await img.PullImage(pb.PullImageRequest(image=image))).image_ref)))
    seen.append(str(len((await img.ListImages(pb.ListImagesRequest())).images)))
    config = pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web", namespace="ns", uid="u", attempt=0),
                                 labels={"app": "web"}, log_directory="/tmp/logs")
    pod = await rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config))
    seen.append(pb.PodSandboxState.Name((await rt.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=pod.pod_sandbox_id))).status.state))
    container = pb.ContainerConfig(metadata=pb.ContainerMetadata(name="c"), image=image,
                                   envs=[pb.KeyValue(key="A", value=b"b" if api == "v1" else "b")], labels={"x": "y"})
    created = await rt.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config, config=container))
    await rt.StartContainer(pb.StartContainerRequest(container_id=created.container_id))
    status = await rt.ContainerStatus(pb.ContainerStatusRequest(container_id=created.container_id))
    seen.append(pb.ContainerState.Name(status.status.state))
    seen.append(str(len((await rt.ListContainers(pb.ListContainersRequest())).containers)))
    probe = await rt.ExecSync(pb.ExecSyncRequest(container_id=created.container_id, cmd=["echo", "ok"], timeout=5))
    seen.append(f"{probe.exit_code}:{probe.stdout.decode().strip()}")
    seen.append(str(len((await rt.ListContainerStats(pb.ListContainerStatsRequest())).stats)))
    seen.append(await _code(rt.StartContainer(pb.StartContainerRequest(container_id="no-such-container"))))
    await rt.StopContainer(pb.StopContainerRequest(container_id=created.container_id, timeout=1))
    await rt.RemoveContainer(pb.RemoveContainerRequest(container_id=created.container_id))
    await rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.pod_sandbox_id))
    await rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.pod_sandbox_id))
    seen.append(str(len((await rt.ListPodSandbox(pb.ListPodSandboxRequest())).items)))
    seen.append(await _code(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod.pod_sandbox_id))))
    return seen
