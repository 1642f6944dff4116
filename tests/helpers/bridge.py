"""A bridge in front of a stand-in runtime, and a kubelet-like client for it."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

from cri_proxy.bridge import Bridge, BridgeOptions
from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.model.sink import MemorySink
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2

MIB = 1 << 20
PKGS: dict[str, ModuleType] = {"v1": v1, "v1alpha2": v1alpha2}
IMAGE_METHODS = {"ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"}

KUBELET_OPTIONS = [("grpc.max_receive_message_length", 16 * MIB),
                   ("grpc.max_send_message_length", 16 * MIB)]


@contextlib.asynccontextmanager
async def bridged(sock_dir: pathlib.Path, api: str, **options: Any
                  ) -> AsyncIterator[tuple[FakeRuntimeServer, Bridge, MemorySink, grpc.aio.Channel]]:
    """A stand-in runtime speaking `api`, a bridge in front of it, and a kubelet-like channel."""
    fake_opts = {k: options.pop(k) for k in ("container_events",) if k in options}
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api, **fake_opts)  # type: ignore[arg-type]
    sink = MemorySink()
    bridge = Bridge(sock_dir / "br.sock", sock_dir / "rt.sock", None, sink=sink,
                    options=BridgeOptions(**options))
    await bridge.start()
    channel = grpc.aio.insecure_channel(bridge.address, options=KUBELET_OPTIONS)
    try:
        yield runtime, bridge, sink, channel
    finally:
        await channel.close(None)
        await bridge.stop(None)
        await runtime.stop(None)


async def recorded(sink: MemorySink, count: int) -> list[Any]:
    """The sink's calls once it holds `count`: calls are recorded just after their reply."""
    for _ in range(200):
        if len(sink.calls) >= count:
            break
        await asyncio.sleep(0.01)
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






