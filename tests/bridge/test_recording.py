"""cri_proxy/bridge/recording.py: a bridged call is recorded once grpc has finished it, on a real server."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import grpc
import pytest

from cri_proxy.bridge.recording import CallLog, as_text
from cri_proxy.model.call import Direction, Outcome
from cri_proxy.model.sink import MemorySink

pytestmark = pytest.mark.timeout(20)
PATH = "/runtime.v1.RuntimeService/Version"


def test_binary_metadata_becomes_base64_text() -> None:
    assert as_text([("a", "1"), ("x-bin", b"\x00\xff")]) == [("a", "1"), ("x-bin", "AP8=")]
    assert as_text(None) == []


async def serve_logged(sock: pathlib.Path, sink: MemorySink | None, logs: list[CallLog]) -> grpc.aio.Server:
    async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        log = CallLog(sink, PATH, "v1", "unix:///run/rt.sock", tuple(context.invocation_metadata() or ()))
        logs.append(log)
        log.attach(context)
        log.add(Direction.REQUEST, request)
        if request == b"hang":
            await asyncio.sleep(3600)
        log.note("translated v1 -> v1alpha2")
        log.add(Direction.RESPONSE, b"reply")
        log.status(grpc.StatusCode.OK, None, (("x-t-bin", b"\x01"),))
        return b"reply"

    def same(data: bytes) -> bytes:
        return data

    handler = grpc.unary_unary_rpc_method_handler(handle, request_deserializer=same, response_serializer=same)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("runtime.v1.RuntimeService",
                                                                          {"Version": handler}),))
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    return server


async def wait_calls(sink: MemorySink, count: int) -> None:
    async with asyncio.timeout(10):
        while len(sink.calls) < count:
            await asyncio.sleep(0.01)


async def test_calls_are_recorded_when_grpc_is_done_with_them(sock_dir: pathlib.Path) -> None:
    sink, logs = MemorySink(), []
    server = await serve_logged(sock_dir / "b.sock", sink, logs)
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/b.sock") as ch:
            call = ch.unary_unary(PATH, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            assert await call(b"ping", metadata=(("x-a", "1"),)) == b"reply"
            hanging = call(b"hang")
            async with asyncio.timeout(10):
                while len(logs) < 2:  # the server has the request
                    await asyncio.sleep(0.01)
            hanging.cancel()
            await wait_calls(sink, 2)
    finally:
        await server.stop(0)
    done, cut = sorted(sink.calls, key=lambda c: c.stream_id)
    assert (done.status_code, done.outcome, done.notes) == (0, Outcome.COMPLETED, ["translated v1 -> v1alpha2"])
    assert [(m.direction, m.index, m.data) for m in done.messages] == [
        (Direction.REQUEST, 0, b"ping"), (Direction.RESPONSE, 0, b"reply")]
    assert ("x-a", "1") in done.request_metadata and done.trailers == [("x-t-bin", "AQ==")]
    # cancelled by the client: recorded when grpc is done with it, without a status, and so failed
    assert cut.status_code is None and cut.failed
    assert [m.data for m in cut.messages] == [b"hang"]


async def test_without_a_sink_nothing_is_kept(sock_dir: pathlib.Path) -> None:
    logs: list[CallLog] = []
    server = await serve_logged(sock_dir / "b.sock", None, logs)
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/b.sock") as ch:
            call = ch.unary_unary(PATH, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            assert await call(b"ping") == b"reply"
    finally:
        await server.stop(0)
    [log] = logs
    assert log._messages == [] and log.notes == ["translated v1 -> v1alpha2"]
