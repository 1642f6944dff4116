"""The relay's transparency rig: a call made straight on the fake runtime's socket and through
an in-process `RelayServer` must look the same to a client (status code, details, initial and
trailing metadata, every response message's bytes), but for the few answers that legitimately
change between two back-to-back calls (`VARYING`). The RPCs come from the compiled descriptors
and are called with raw bytes. Used by tests/proxy/test_server.py (every RPC) and
tests/proxy/test_firstcall.py (image calls to their own socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from cri_proxy.fakeruntime import FakeRuntimeServer, start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.proxy.server import RelayServer
from tests.helpers.fakeruntime import KUBELET_CHANNEL_OPTIONS

PACKAGES: dict[str, ModuleType] = {"v1": v1, "v1alpha2": v1alpha2}


def rpcs(version: str) -> list[MethodDescriptor]:
    services = PACKAGES[version].DESCRIPTOR.services_by_name.values()
    return [method for service in services for method in service.methods]


ALL_RPCS = [(version, m) for version in PACKAGES for m in rpcs(version)]


def rpc_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def rpc_id(item: tuple[str, MethodDescriptor]) -> str:
    return f"{item[0]}/{item[1].containing_service.name}/{item[1].name}"


def _version_of(method: MethodDescriptor) -> str:
    return method.containing_service.full_name.split(".")[1]


# Calls that change the runtime's state: two back-to-back calls answer differently (a new id,
# or FAILED_PRECONDITION the second time), so `test_lifecycle_*` runs them once, through the
# proxy, and checks their effect with reads that must agree directly and through the proxy.
MUTATING = frozenset({
    "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox",
    "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
    "UpdateContainerResources", "UpdatePodSandboxResources", "UpdateRuntimeConfig",
    "PullImage", "RemoveImage",
})
# A stream that never ends by itself: read until a short deadline (both ways alike).
ENDLESS = frozenset({"GetContainerEvents"})
ENDLESS_DEADLINE = 1.5

# The only answers allowed to differ between two back-to-back calls, and the fields that may:
# - `timestamp`: the time of the reply in ns (stats, PodSandboxStatus, ImageFsInfo);
# - `usage_core_nano_seconds`, `rx_bytes`, `tx_bytes`: cumulative counters of running
#   containers and pods, which grow with the time between the two calls;
# - `url`: Exec/Attach/PortForward answer a single-use URL whose last segment is a random
#   token; the rest of the URL (host, port, kind) must still be equal.
# Those fields are blanked (whether each is set still counts); the rest of each message, the
# status, the details and the metadata stay compared exactly.
_STATS_FIELDS = frozenset({"timestamp", "usage_core_nano_seconds", "rx_bytes", "tx_bytes"})
VARYING: dict[str, frozenset[str]] = {
    "PodSandboxStatus": frozenset({"timestamp"}),
    "ImageFsInfo": frozenset({"timestamp"}),
    "ContainerStats": _STATS_FIELDS,
    "ListContainerStats": _STATS_FIELDS,
    "StreamContainerStats": _STATS_FIELDS,
    "PodSandboxStats": _STATS_FIELDS,
    "ListPodSandboxStats": _STATS_FIELDS,
    "StreamPodSandboxStats": _STATS_FIELDS,
    "Exec": frozenset({"url"}),
    "Attach": frozenset({"url"}),
    "PortForward": frozenset({"url"}),
}


def raw(data: bytes) -> bytes:
    return data


@dataclass(frozen=True)
class Outcome:
    """Everything a client can observe of one call."""

    code: grpc.StatusCode
    details: str | None
    initial: tuple[Any, ...]
    trailing: tuple[Any, ...]
    messages: tuple[bytes, ...]


async def observe(ch: grpc.aio.Channel, path: str, request: bytes, *, stream: bool = False,
                  timeout: float = 5.0) -> Outcome:
    messages: list[bytes] = []
    call: Any
    if stream:
        call = ch.unary_stream(path, request_serializer=raw, response_deserializer=raw)(
            request, timeout=timeout)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for message in call:
                messages.append(message)
    else:
        call = ch.unary_unary(path, request_serializer=raw, response_deserializer=raw)(
            request, timeout=timeout)
        with contextlib.suppress(grpc.aio.AioRpcError):
            messages.append(await call)
    return Outcome(await call.code(), await call.details(), tuple(await call.initial_metadata() or ()),
                   tuple(await call.trailing_metadata() or ()), tuple(messages))


def _scrub(msg: Message, names: frozenset[str]) -> None:
    """Blank the named fields anywhere in `msg`, keeping which are set and a URL but its token."""
    for field, value in msg.ListFields():
        if field.name in names:
            if field.name == "url":
                setattr(msg, "url", value.rsplit("/", 1)[0] + "/TOKEN")
            elif field.message_type is not None:  # a UInt64Value counter
                msg.ClearField(field.name)
                getattr(msg, field.name).SetInParent()
            else:  # a time in ns
                setattr(msg, field.name, 1)
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _scrub(item, names)
        elif field.is_repeated:
            for item in value:
                _scrub(item, names)
        else:
            _scrub(value, names)


def normalized(method: MethodDescriptor, outcome: Outcome) -> Outcome:
    """`outcome` with the fields `VARYING` allows to differ cleared (unchanged for other RPCs)."""
    names = VARYING.get(method.name)
    if names is None:
        return outcome
    cls: type[Message] = getattr(PACKAGES[_version_of(method)], method.output_type.name)
    scrubbed = []
    for data in outcome.messages:
        msg = cls.FromString(data)
        _scrub(msg, names)
        scrubbed.append(msg.SerializeToString(deterministic=True))
    return replace(outcome, messages=tuple(scrubbed))


@dataclass
class Rig:
    runtime: FakeRuntimeServer
    relay: RelayServer
    direct: grpc.aio.Channel
    proxied: grpc.aio.Channel

    async def compare(self, method: MethodDescriptor, request: bytes) -> Outcome:
        """Call `method` directly, then through the proxy; assert both answers agree."""
        stream = method.server_streaming
        if method.name in ENDLESS:
            # Both at once, to wait for the deadline once; it is long enough that an immediate
            # answer (UNIMPLEMENTED) comes back through a busy proxy before it.
            direct, proxied = await asyncio.gather(*(
                observe(ch, rpc_path(method), request, stream=stream, timeout=ENDLESS_DEADLINE)
                for ch in (self.direct, self.proxied)))
        else:
            direct = await observe(self.direct, rpc_path(method), request, stream=stream)
            proxied = await observe(self.proxied, rpc_path(method), request, stream=stream)
        assert normalized(method, proxied) == normalized(method, direct), rpc_path(method)
        return direct


@contextlib.asynccontextmanager
async def rig(sock_dir: pathlib.Path, api: str = "both", **opts: Any) -> AsyncIterator[Rig]:
    """A fake runtime, a relay in front of it, and a kubelet-like channel to each."""
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api, **opts)  # type: ignore[arg-type]
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock")
    await relay.start()
    direct = grpc.aio.insecure_channel(runtime.address, options=KUBELET_CHANNEL_OPTIONS)
    proxied = grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=KUBELET_CHANNEL_OPTIONS)
    try:
        yield Rig(runtime, relay, direct, proxied)
    finally:
        await direct.close(None)
        await proxied.close(None)
        await relay.stop(0)
        await runtime.stop(None)


def method_of(version: str, name: str) -> MethodDescriptor:
    return next(m for m in rpcs(version) if m.name == name)
