"""Start and stop the fake runtime: a grpc.aio server on a unix socket.

`start_fake_runtime` is for tests and embedding; `run_fake_runtime` serves until cancelled
or sent SIGTERM/SIGINT (the CLI's `cri-proxy fake-runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from typing import Any

import grpc

from cri_proxy.fakeruntime.config import ApiMode, FakeRuntimeOptions
from cri_proxy.fakeruntime.handlers import build_handlers
from cri_proxy.fakeruntime.service_image import ImageServicer
from cri_proxy.fakeruntime.service_lifecycle import LifecycleServicer
from cri_proxy.fakeruntime.service_ops import OperationsServicer
from cri_proxy.fakeruntime.state import RuntimeState
from cri_proxy.pb.runtime.v1 import api_pb2 as v1

log = logging.getLogger(__name__)


class RuntimeServicer(LifecycleServicer, OperationsServicer):
    """The whole RuntimeService for one API version."""


class FakeRuntime:
    """A fake runtime's state and options, and the gRPC handlers that serve them."""

    def __init__(self, options: FakeRuntimeOptions | None = None) -> None:
        self.options = options or FakeRuntimeOptions()
        self.state = RuntimeState(self.options.preload_images)
        self._bulk_pods = 0

    def versions(self) -> list[str]:
        return ["v1", "v1alpha2"] if self.options.api == "both" else [self.options.api]

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        skip = frozenset() if self.options.container_events else frozenset({"GetContainerEvents"})
        result: list[grpc.GenericRpcHandler] = []
        for api in self.versions():
            servicers: list[object] = [
                RuntimeServicer(self.state, self.options, api),
                ImageServicer(self.state, self.options, api),
            ]
            result += build_handlers(api, servicers, skip)
        return result

    def populate(
        self, containers: int, *, pods: int = 1, annotation_bytes: int = 0, image: str = ""
    ) -> list[str]:
        """Create `pods` ready pods with `containers` running containers in all; return their ids.

        Each container carries an annotation of `annotation_bytes` bytes, so list and stats
        replies can be made as big as a test needs without sending a big request.
        """
        image = image or self.state.images.list()[-1].id
        pod_ids = []
        for _ in range(max(1, pods)):
            p, self._bulk_pods = self._bulk_pods, self._bulk_pods + 1
            md = v1.PodSandboxMetadata(name=f"bulk-{p}", namespace="bulk", uid=f"uid-bulk-{p}")
            pod = self.state.run_pod(v1.PodSandboxConfig(metadata=md, hostname=md.name))
            pod_ids.append(pod.id)
        pad = {"fake.cri-proxy.io/padding": "x" * annotation_bytes} if annotation_bytes else {}
        ids = []
        for i in range(containers):
            cfg = v1.ContainerConfig(
                metadata=v1.ContainerMetadata(name=f"c{i}"),
                image=v1.ImageSpec(image=image),
                labels={"fake.cri-proxy.io/bulk": "true"},
                annotations=pad,
            )
            ctr = self.state.create_container(pod_ids[i % len(pod_ids)], cfg)
            self.state.start_container(ctr.id)
            ids.append(ctr.id)
        return ids


def socket_path(address: str) -> str:
    """The filesystem path of `unix:///abs/path` or of a bare absolute path."""
    path = address.removeprefix("unix://") if address.startswith("unix://") else address
    if not path.startswith("/"):
        raise ValueError(f"fake runtime address must be unix:///absolute/path, not {address!r}")
    return path


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ValueError(f"{path} exists and is not a socket")
        os.unlink(path)
        log.info("removed stale socket %s", path)


class FakeRuntimeServer:
    """A running fake runtime. Stop it with `await stop()`."""

    def __init__(self, address: str, runtime: FakeRuntime, server: grpc.aio.Server) -> None:
        self.address = address
        self.path = socket_path(address)
        self.runtime = runtime
        self.server = server

    @property
    def state(self) -> RuntimeState:
        return self.runtime.state

    @property
    def options(self) -> FakeRuntimeOptions:
        return self.runtime.options

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving (in-flight calls get `grace` seconds) and remove the socket file."""
        await self.server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        log.info("fake runtime on %s stopped", self.address)


async def start_fake_runtime(address: str, api: ApiMode = "both", **opts: Any) -> FakeRuntimeServer:
    """Serve a new fake runtime on a unix socket; `opts` are `FakeRuntimeOptions` fields."""
    runtime = FakeRuntime(FakeRuntimeOptions(api=api, **opts))
    if runtime.options.populate_containers:
        runtime.populate(
            runtime.options.populate_containers,
            pods=max(1, runtime.options.populate_containers // 10),
            annotation_bytes=runtime.options.populate_annotation_bytes,
        )
    path = socket_path(address)
    _remove_stale_socket(path)
    limit = runtime.options.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
    )
    server.add_generic_rpc_handlers(runtime.handlers())
    server.add_insecure_port(f"unix://{path}")
    await server.start()
    log.info(
        "fake runtime serving CRI %s on unix://%s (container events %s)",
        "+".join(runtime.versions()),
        path,
        "on" if runtime.options.container_events else "UNIMPLEMENTED",
    )
    return FakeRuntimeServer(f"unix://{path}", runtime, server)


async def run_fake_runtime(address: str, api: ApiMode = "both", **opts: Any) -> None:
    """Serve a fake runtime until cancelled or sent SIGTERM or SIGINT."""
    served = await start_fake_runtime(address, api, **opts)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, done.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: rely on cancellation
    try:
        await done.wait()
        log.info("fake runtime got a stop signal")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await served.stop(grace=1.0)
