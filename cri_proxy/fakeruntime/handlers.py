"""gRPC method handlers for the fake runtime, per API version.

The servicers are written once against runtime.v1 messages. runtime.v1alpha2 is served by
the same code: its shared messages are wire-identical, so a request is parsed as the
v1alpha2 type (which validates it as a v1alpha2 runtime would and drops v1-only fields),
re-parsed as v1, and a reply is re-parsed as v1alpha2 so v1-only fields never leave. Methods
a version lacks, or the servicers do not define, are not registered: grpc answers them
UNIMPLEMENTED. This is also the one place where `FakeRuntimeError` becomes a gRPC status.

A request that does not parse is answered INTERNAL, as grpc-go runtimes do. Under v1alpha2
that includes a `KeyValue.value` (a string there, bytes in v1) that is not valid UTF-8: the
fake runtime behaves like a v1alpha2 runtime whose decoder validates UTF-8 (gogo-generated
ones, such as containerd 1.6's, do not check).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from cri_proxy.fakeruntime.config import Context
from cri_proxy.fakeruntime.state import FakeRuntimeError
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2

log = logging.getLogger(__name__)

PACKAGES: dict[str, ModuleType] = {"v1": v1, "v1alpha2": v1alpha2}

UnaryImpl = Callable[[Any, Context], Awaitable[Message]]
StreamImpl = Callable[[Any, Context], AsyncIterator[Message]]


def _reencode(cls: type[Message], data: bytes) -> bytes:
    """`data` as `cls` would write it after reading it: fields `cls` lacks are dropped."""
    msg = cls.FromString(data)
    msg.DiscardUnknownFields()
    return msg.SerializeToString()


Deserializer = Callable[[bytes], Any]
Serializer = Callable[[Any], bytes]


class _Undecodable:
    """A request that did not parse; the handler answers it INTERNAL, as a Go server does."""

    def __init__(self, error: DecodeError) -> None:
        self.message = f"grpc: error unmarshalling request: {error}"


def _codecs(api: str, method: MethodDescriptor) -> tuple[Deserializer, Serializer]:
    req_v1: type[Message] = getattr(v1, method.input_type.name)
    pkg = PACKAGES[api]
    req_wire: type[Message] = getattr(pkg, method.input_type.name)
    resp_wire: type[Message] = getattr(pkg, method.output_type.name)

    # grpcio would answer UNKNOWN to a deserializer's exception; containerd and CRI-O
    # (grpc-go) answer INTERNAL, so the error is carried to the handler instead.
    def deserialize(data: bytes) -> Any:
        try:
            if api == "v1":
                return req_v1.FromString(data)
            return req_v1.FromString(_reencode(req_wire, data))
        except DecodeError as exc:
            return _Undecodable(exc)

    if api == "v1":
        return deserialize, lambda msg: msg.SerializeToString()

    def serialize(msg: Any) -> bytes:
        return _reencode(resp_wire, msg.SerializeToString())

    return deserialize, serialize


def _unary(full_name: str, impl: UnaryImpl) -> UnaryImpl:
    async def handler(request: Any, context: Context) -> Message:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INTERNAL, request.message)
        try:
            return await impl(request, context)
        except FakeRuntimeError as exc:
            log.info("%s failed: %s %s", full_name, exc.code.name, exc.message)
            await context.abort(exc.code, exc.message)

    return handler


def _stream(full_name: str, impl: StreamImpl) -> StreamImpl:
    async def handler(request: Any, context: Context) -> AsyncIterator[Message]:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INTERNAL, request.message)
        try:
            async for item in impl(request, context):
                yield item
        except FakeRuntimeError as exc:
            log.info("%s failed: %s %s", full_name, exc.code.name, exc.message)
            await context.abort(exc.code, exc.message)

    return handler


def build_handlers(
    api: str, servicers: list[object], skip: frozenset[str] = frozenset()
) -> list[grpc.GenericRpcHandler]:
    """Generic handlers for RuntimeService and ImageService of one API version ("v1" or "v1alpha2").

    Each method is served by the first servicer that defines it; `skip` names methods to
    leave UNIMPLEMENTED.
    """
    pkg = PACKAGES[api]
    result: list[grpc.GenericRpcHandler] = []
    for service in pkg.DESCRIPTOR.services_by_name.values():
        methods: dict[str, grpc.RpcMethodHandler] = {}
        for method in service.methods:
            owner = next((s for s in servicers if hasattr(s, method.name)), None)
            impl = getattr(owner, method.name, None)
            if impl is None or method.name in skip:
                continue
            deserialize, serialize = _codecs(api, method)
            full_name = f"/{service.full_name}/{method.name}"
            if method.server_streaming:
                methods[method.name] = grpc.unary_stream_rpc_method_handler(
                    _stream(full_name, impl), deserialize, serialize
                )
            else:
                methods[method.name] = grpc.unary_unary_rpc_method_handler(
                    _unary(full_name, impl), deserialize, serialize
                )
        result.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return result
