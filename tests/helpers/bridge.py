"""A bridge in front of a stand-in runtime, and a kubelet-like client for it."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

from cri_proxy.bridge import Bridge, BridgeOptions
from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.model.sink import CallSink, MemorySink
from cri_proxy.model.upstream import UpstreamApis
from cri_proxy.proxy.prober import VersionProber
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2

MIB = 1 << 20
PKGS: dict[str, ModuleType] = {"v1": v1, "v1alpha2": v1alpha2}
IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}

KUBELET_OPTIONS = [("grpc.max_receive_message_length", 16 * MIB),
                   ("grpc.max_send_message_length", 16 * MIB)]


@contextlib.asynccontextmanager
async def probed_bridge(sock_dir: pathlib.Path, runtime: pathlib.Path, image: pathlib.Path | None = None, *,
                        sink: CallSink | None = None, on_change: Callable[[UpstreamApis], None] | None = None,
                        **options: Any) -> AsyncIterator[Bridge]:
    """A bridge on `sock_dir`/br.sock given a version prober of its upstreams, as the proxy gives it
    one: probed once before it serves, then kept current in the background."""
    opts = BridgeOptions(**options)
    prober = VersionProber(runtime, image, emulate_events=opts.emulate_events, on_change=on_change,
                           timeout=opts.probe_timeout, max_backoff=0.5)
    await prober.reprobe()
    bridge = Bridge(sock_dir / "br.sock", runtime, image, apis=prober, sink=sink, options=opts)
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop(None)
        await prober.close()


@contextlib.asynccontextmanager
async def bridged(sock_dir: pathlib.Path, api: str, **options: Any
                  ) -> AsyncIterator[tuple[FakeRuntimeServer, Bridge, MemorySink, grpc.aio.Channel]]:
    """A stand-in runtime speaking `api`, a bridge in front of it, and a kubelet-like channel."""
    fake_opts = {k: options.pop(k) for k in ("container_events",) if k in options}
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api, **fake_opts)  # type: ignore[arg-type]
    sink = MemorySink()
    try:
        async with probed_bridge(sock_dir, sock_dir / "rt.sock", sink=sink, **options) as bridge:
            channel = grpc.aio.insecure_channel(bridge.address, options=KUBELET_OPTIONS)
            try:
                yield runtime, bridge, sink, channel
            finally:
                await channel.close(None)
    finally:
        await runtime.stop(None)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether `check()` came true within `timeout` seconds (looked at every 10 ms, so a passing
    test waits no longer than what it waits for; the long timeout is for loaded machines)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def recorded(sink: MemorySink, count: int) -> list[Any]:
    """The sink's calls once it holds `count` (or after 10 s, what it has): calls are recorded
    just after their reply."""
    await until(lambda: len(sink.calls) >= count)
    return sink.calls


class Client:
    """Calls CRI methods of one version by name, with that version's message classes."""

    def __init__(self, channel: grpc.aio.Channel, api: str) -> None:
        self.channel, self.api, self.pkg = channel, api, PKGS[api]

    async def call(self, method: str, timeout: float | None = 10, **fields: Any) -> Any:
        service = "ImageService" if method in IMAGE_METHODS else "RuntimeService"
        desc = self.pkg.DESCRIPTOR.services_by_name[service].methods_by_name[method]
        req_cls = getattr(self.pkg, desc.input_type.name)
        resp_cls = getattr(self.pkg, desc.output_type.name)
        stub = self.channel.unary_unary(f"/runtime.{self.api}.{service}/{method}",
                                        request_serializer=req_cls.SerializeToString,
                                        response_deserializer=resp_cls.FromString)
        return await stub(json_format.ParseDict(fields, req_cls()), timeout=timeout)






