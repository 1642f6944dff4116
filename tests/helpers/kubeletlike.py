"""A client that calls the runtime the way a kubelet does, for the fault scenarios.

A kubelet pulls an image again after each failure, waiting longer each time (ImagePullBackOff:
10 s doubling up to 5 min; here a fraction of a second), relists pods and containers for its
PLEG (ListPodSandbox, then ListContainers, one relist after the other), and, when it starts,
asks PodSandboxStatus and ContainerStatus of every pod it finds. `named` gives this process
the name `client:` rules match on (`kubelet`) while a connection is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import pathlib
import threading
from collections.abc import Iterator

import grpc

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc

PR_SET_NAME = 15


def _set_name(name: str) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


@contextlib.contextmanager
def named(name: str) -> Iterator[None]:
    """This process is `name` meanwhile, as the proxy reads a peer's name (/proc/PID/comm: the
    main thread's name), and its own name again after."""
    assert threading.current_thread() is threading.main_thread()
    old = pathlib.Path("/proc/self/comm").read_text().strip()
    _set_name(name)
    try:
        yield
    finally:
        _set_name(old)


async def code(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


class KubeletLike:
    """The kubelet's calls of the fault scenarios, on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.rt = v1_grpc.RuntimeServiceStub(channel)
        self.img = v1_grpc.ImageServiceStub(channel)

    async def pull(self, image: str, attempts: int, backoff: float = 0.05) -> list[str]:
        """PullImage until it works or `attempts` ran out, the back-off doubling after each
        failure; the code of each attempt."""
        seen: list[str] = []
        for _ in range(attempts):
            seen.append(await code(self.img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=image)))))
            if seen[-1] == "OK":
                break
            await asyncio.sleep(backoff)
            backoff *= 2
        return seen

    async def relist(self) -> tuple[str, str]:
        """One PLEG relist: the codes of ListPodSandbox and ListContainers."""
        return (await code(self.rt.ListPodSandbox(v1.ListPodSandboxRequest())),
                await code(self.rt.ListContainers(v1.ListContainersRequest())))

    async def sync_pod(self, sandbox_id: str, container_ids: list[str]) -> list[str]:
        """A pod's status, as a kubelet asks it of each pod it finds: the codes."""
        seen = [await code(self.rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)))]
        for container_id in container_ids:
            seen.append(await code(self.rt.ContainerStatus(v1.ContainerStatusRequest(container_id=container_id))))
        return seen
