"""A raw-bytes gRPC test server that exercises every call shape the relay must carry.

Methods of the made-up service `test.Echo` (any other path answers UNIMPLEMENTED, as a real
server does for a service it lacks):
- Unary: echoes the request; echoes `x-echo-*` request metadata as initial and trailing metadata.
- Fail: aborts with the code and details written in the request as b"CODE:details".
- Big: replies with as many bytes as the request's decimal number says.
- ServerStream: sends the request's decimal number of messages.
- ClientStream: replies with the concatenation of the messages received.
- Bidi: echoes each message as it arrives.
- Hang: waits until cancelled; records the deadline it saw and that it was cancelled.
- Sleep: replies after the request's decimal number of milliseconds.
- SlowStream: sends a message every 50 ms, the request's decimal number of them.
Any `/runtime.*` method answers b"<server name>:<request>", so tests can tell which
server a call reached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

LIMIT = 64 << 20
OPTIONS = [("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)]


def _same(x: bytes) -> bytes:
    return x


@dataclass
class Seen:
    """What the server observed, for tests to check propagation."""

    hang_deadlines: list[float | None] = field(default_factory=list)
    hang_cancelled: int = 0
    metadata: list[tuple[tuple[str, Any], ...]] = field(default_factory=list)


class EchoHandler(grpc.GenericRpcHandler):
    def __init__(self, seen: Seen, name: str) -> None:
        self.seen = seen
        self.name = name.encode()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        name = details.method  # type: ignore[attr-defined]
        self.seen.metadata.append(tuple(details.invocation_metadata))  # type: ignore[attr-defined]
        kinds = {
            "/test.Echo/Unary": grpc.unary_unary_rpc_method_handler,
            "/test.Echo/Fail": grpc.unary_unary_rpc_method_handler,
            "/test.Echo/Big": grpc.unary_unary_rpc_method_handler,
            "/test.Echo/Hang": grpc.unary_unary_rpc_method_handler,
            "/test.Echo/Sleep": grpc.unary_unary_rpc_method_handler,
            "/test.Echo/SlowStream": grpc.unary_stream_rpc_method_handler,
            "/test.Echo/ServerStream": grpc.unary_stream_rpc_method_handler,
            "/test.Echo/ClientStream": grpc.stream_unary_rpc_method_handler,
            "/test.Echo/Bidi": grpc.stream_stream_rpc_method_handler,
        }
        if name.startswith("/runtime."):
            return grpc.unary_unary_rpc_method_handler(
                self.named, request_deserializer=_same, response_serializer=_same)
        if name not in kinds:
            return None
        impl = getattr(self, name.rsplit("/", 1)[1].lower())
        return kinds[name](impl, request_deserializer=_same, response_serializer=_same)  # type: ignore[operator]

    async def named(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return self.name + b":" + request

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        echo = tuple((k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo-"))
        await context.send_initial_metadata(echo)
        context.set_trailing_metadata(echo + (("x-trailer-bin", b"\x00\x01\xff"),))
        return request

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        code, _, details = request.decode().partition(":")
        context.set_trailing_metadata((("x-why", "asked-to-fail"),))
        await context.abort(grpc.StatusCode[code], details)
        raise AssertionError("abort returns by raising")

    async def big(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        size = int(request)
        return (b"0123456789abcdef" * (size // 16 + 1))[:size]

    async def hang(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.seen.hang_deadlines.append(context.time_remaining())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.seen.hang_cancelled += 1
            raise
        return b""

    async def sleep(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(int(request) / 1000)
        return b"slept " + request

    async def slowstream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            await asyncio.sleep(0.05)
            yield b"tick %d" % i

    async def serverstream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        for i in range(int(request)):
            yield b"message %d" % i

    async def clientstream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return b"|".join([r async for r in requests])

    async def bidi(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for request in requests:
            yield b"echo:" + request


async def start_echo(address: str, name: str = "echo") -> tuple[grpc.aio.Server, Seen]:
    seen = Seen()
    server = grpc.aio.server(options=OPTIONS)
    server.add_generic_rpc_handlers((EchoHandler(seen, name),))
    server.add_insecure_port(address)
    await server.start()
    return server, seen


def channel(address: str) -> grpc.aio.Channel:
    """A channel with a connection of its own, as the kubelet's clients have (grpcio channels
    to one address otherwise share a connection, even just after one of them closed)."""
    return grpc.aio.insecure_channel(address, options=OPTIONS + [("grpc.use_local_subchannel_pool", 1)])


def unary(ch: grpc.aio.Channel, method: str) -> Any:
    return ch.unary_unary(method, request_serializer=_same, response_deserializer=_same)


async def outcome(address: str, method: str, request: bytes, **kwargs: Any) -> tuple[Any, ...]:
    """Everything a client can observe of a unary call: reply or status, metadata, trailers."""
    async with channel(address) as ch:
        call = unary(ch, method)(request, **kwargs)
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            return ("error", exc.code(), exc.details(), tuple(exc.trailing_metadata() or ()))
        return ("ok", reply, tuple(await call.initial_metadata()), tuple(await call.trailing_metadata()))


async def _serve_forever(address: str) -> None:
    server, _ = await start_echo(address)
    await server.wait_for_termination()


if __name__ == "__main__":  # python -m tests.helpers.backend unix:///path: the echo server in a process of its own
    import sys

    asyncio.run(_serve_forever(sys.argv[1]))

