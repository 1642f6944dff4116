"""Sending one recorded request to the target as raw bytes, unary or server-streaming.

A server stream is read for a bounded window (the recorded duration, within limits) and then
cancelled, so a GetContainerEvents held open for hours in the recording does not hold the
replay. `Answer.cut` says the window ended the stream rather than the server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from cri_proxy.model.status import StatusCode

OK = int(StatusCode.OK)


@dataclass(slots=True)
class Answer:
    code: int
    message: str
    responses: list[bytes] = field(default_factory=list)
    offsets_s: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    cut: bool = False  # a stream we cancelled at the end of its window


def _identity(data: bytes) -> bytes:
    return data


async def unary(channel: grpc.aio.Channel, path: str, request: bytes, timeout_s: float) -> Answer:
    start = time.monotonic()
    call = channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
    try:
        reply = await call(request, timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        return Answer(exc.code().value[0], exc.details() or "", duration_s=time.monotonic() - start)
    took = time.monotonic() - start
    return Answer(OK, "", [reply], [took], took)


async def stream(channel: grpc.aio.Channel, path: str, request: bytes, window_s: float) -> Answer:
    start = time.monotonic()
    call = channel.unary_stream(path, request_serializer=_identity, response_deserializer=_identity)(request)
    answer = Answer(OK, "")
    try:
        async with asyncio.timeout(window_s):
            async for message in call:
                answer.responses.append(message)
                answer.offsets_s.append(time.monotonic() - start)
        code = await call.code()
        answer.code, answer.message = code.value[0], await call.details() or ""
    except TimeoutError:
        call.cancel()
        answer.cut = True
    except grpc.aio.AioRpcError as exc:
        answer.code, answer.message = exc.code().value[0], exc.details() or ""
    answer.duration_s = time.monotonic() - start
    return answer
