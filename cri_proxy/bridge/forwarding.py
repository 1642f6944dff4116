"""Forwarding one call upstream as raw bytes, and copying its outcome back verbatim.

Request metadata is copied minus what HTTP/2 and gRPC own (pseudo-headers, content-type,
user-agent, te, grpc-timeout, grpc-encoding...). The caller's deadline becomes the upstream
call's timeout; a cancelled handler cancels the upstream call. Initial metadata, trailing
metadata (including `grpc-status-details-bin`), status code and details come back unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from cri_proxy.model.call import Direction
from cri_proxy.bridge.channels import Upstream
from cri_proxy.bridge.recording import CallLog, MetadataPairs

Context = grpc.aio.ServicerContext[Any, Any]

_HOP_HEADERS = frozenset({"content-type", "user-agent", "te", "host", "connection",
                          "accept-encoding", "content-length"})


def copyable(metadata: MetadataPairs | None) -> list[tuple[str, str | bytes]]:
    """The metadata a proxy may pass on: not pseudo-headers, not headers gRPC itself sets."""
    return [
        (k, v) for k, v in metadata or ()
        if not k.startswith(":") and k not in _HOP_HEADERS
        and (not k.startswith("grpc-") or k == "grpc-status-details-bin")
    ]


async def relay_error(exc: grpc.aio.AioRpcError, up: Upstream, context: Context,
                      log: CallLog, headers_sent: bool = False) -> NoReturn:
    """End the served call the way the upstream call ended."""
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        up.mark_unavailable()
    trailers = copyable(exc.trailing_metadata())
    initial = copyable(exc.initial_metadata())
    if initial and not headers_sent:
        await context.send_initial_metadata(initial)
        log.response_metadata = initial
    log.status(exc.code(), exc.details(), trailers)
    await context.abort(exc.code(), exc.details() or "", trailing_metadata=tuple(trailers))
    raise AssertionError("abort returned")  # abort always raises; this satisfies NoReturn


async def unary(up: Upstream, path: str, request: bytes, context: Context, log: CallLog) -> bytes:
    """Forward a unary call; return the upstream's reply bytes.

    A failed upstream call raises its `AioRpcError`, so the caller may still answer or retry
    before `relay_error` ends the served call with the upstream's outcome.
    """
    call = up.unary(path)(
        request, timeout=context.time_remaining(),
        metadata=copyable(context.invocation_metadata()), wait_for_ready=False)
    try:
        reply: bytes = await call  # an AioRpcError goes to the caller: see `relay_error`
        initial = copyable(await call.initial_metadata())
        trailers = copyable(await call.trailing_metadata())
    except asyncio.CancelledError:
        call.cancel()
        raise
    if initial:
        await context.send_initial_metadata(initial)
    context.set_trailing_metadata(tuple(trailers))
    log.response_metadata = initial
    log.status(grpc.StatusCode.OK, None, trailers)
    log.add(Direction.RESPONSE, reply)
    return reply


async def stream(up: Upstream, call: Any, context: Context, log: CallLog) -> AsyncIterator[bytes]:
    """Relay an upstream call's replies (unary-stream or stream-stream) to the served call."""
    headers_sent = False
    try:
        initial = copyable(await call.initial_metadata())
        if initial:
            await context.send_initial_metadata(initial)
            headers_sent = True
        log.response_metadata = initial
        async for reply in call:
            log.add(Direction.RESPONSE, reply)
            yield reply
        trailers = copyable(await call.trailing_metadata())
    except grpc.aio.AioRpcError as exc:
        await relay_error(exc, up, context, log, headers_sent)
    except (asyncio.CancelledError, GeneratorExit):
        call.cancel()
        raise
    context.set_trailing_metadata(tuple(trailers))
    log.status(grpc.StatusCode.OK, None, trailers)
