"""Faithful forwarding through the bridge: metadata, deadlines, cancellation, status, details
and trailers, streaming, and paths the bridge does not know (passed through as raw bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from cri_proxy.model.sink import MemorySink
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from tests.helpers import backend
from tests.helpers.bridge import probed_bridge, recorded

pytestmark = pytest.mark.timeout(60)

# A google.rpc.Status (code 5, message "gone", no details), as grpc-go puts it in trailers.
STATUS_DETAILS = b"\x08\x05\x12\x04gone"


@dataclass
class OldSeen:
    metadata: list[tuple[str, Any]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)


class OldRuntime(grpc.GenericRpcHandler):
    """A v1alpha2-only upstream with hand-made outcomes (the stand-in has no such corners)."""

    def __init__(self, seen: OldSeen) -> None:
        self.seen = seen

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method  # type: ignore[attr-defined]
        impl = {
            "/runtime.v1alpha2.RuntimeService/Version": self.version,
            "/runtime.v1alpha2.ImageService/ImageFsInfo": self.version,
            "/runtime.v1alpha2.RuntimeService/ContainerStatus": self.not_found,
            "/runtime.v1alpha2.RuntimeService/StopContainer": self.echo,
            "/runtime.v1alpha2.RuntimeService/ExecSync": self.hang,
        }.get(method)
        return None if impl is None else grpc.unary_unary_rpc_method_handler(impl)

    async def version(self, request: bytes, context: Any) -> bytes:
        return v1alpha2.VersionResponse(runtime_api_version="v1alpha2").SerializeToString()

    async def not_found(self, request: bytes, context: Any) -> bytes:
        await context.send_initial_metadata((("x-initial", "early"),))
        await context.abort(grpc.StatusCode.NOT_FOUND, 'container "c1" not found: ünïcode %20',
                            trailing_metadata=(("x-trailer", "late"), ("x-blob-bin", b"\x00\xff"),
                                               ("grpc-status-details-bin", STATUS_DETAILS)))
        return b""

    async def echo(self, request: bytes, context: Any) -> bytes:
        md = tuple(context.invocation_metadata())
        self.seen.metadata.extend(md)
        echo = tuple((k, v) for k, v in md if k.startswith("x-echo"))
        await context.send_initial_metadata(echo)
        context.set_trailing_metadata(echo + (("x-done-bin", b"\x01\x02"),))
        return request

    async def hang(self, request: bytes, context: Any) -> bytes:
        self.seen.deadlines.append(context.time_remaining())
        self.seen.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.seen.cancelled.set()
            raise
        return b""


@contextlib.asynccontextmanager
async def old_runtime_bridge(sock_dir: pathlib.Path) -> AsyncIterator[tuple[OldSeen, MemorySink, grpc.aio.Channel]]:
    seen = OldSeen()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((OldRuntime(seen),))
    server.add_insecure_port(f"unix://{sock_dir}/old.sock")
    await server.start()
    sink = MemorySink()
    try:
        async with probed_bridge(sock_dir, sock_dir / "old.sock", sink=sink) as bridge:
            channel = grpc.aio.insecure_channel(bridge.address)
            try:
                assert bridge.api_for("runtime") == "v1alpha2"
                yield seen, sink, channel
            finally:
                await channel.close(None)
    finally:
        await server.stop(None)


def raw(channel: grpc.aio.Channel, path: str) -> Any:
    return channel.unary_unary(path)


async def test_status_details_and_trailers_verbatim(sock_dir: pathlib.Path) -> None:
    async with old_runtime_bridge(sock_dir) as (_, sink, channel):
        call = raw(channel, "/runtime.v1.RuntimeService/ContainerStatus")(
            v1.ContainerStatusRequest(container_id="c1").SerializeToString())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        exc = err.value
        assert exc.code() == grpc.StatusCode.NOT_FOUND
        assert exc.details() == 'container "c1" not found: ünïcode %20'
        trailers = dict(exc.trailing_metadata() or ())
        assert trailers["x-trailer"] == "late" and trailers["x-blob-bin"] == b"\x00\xff"
        assert trailers["grpc-status-details-bin"] == STATUS_DETAILS
        assert dict(exc.initial_metadata() or ())["x-initial"] == "early"
        rec = (await recorded(sink, 1))[0]
        assert rec.status_code == grpc.StatusCode.NOT_FOUND.value[0]
        assert rec.status_message == 'container "c1" not found: ünïcode %20'
        assert ("x-trailer", "late") in rec.trailers


async def test_metadata_both_ways(sock_dir: pathlib.Path) -> None:
    async with old_runtime_bridge(sock_dir) as (seen, sink, channel):
        request = v1.StopContainerRequest(container_id="c1", timeout=3).SerializeToString()
        call = raw(channel, "/runtime.v1.RuntimeService/StopContainer")(request, metadata=(
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("x-echo-one", "1"), ("x-echo-bin", b"\xff\x00")))
        assert await call == request
        assert dict(await call.initial_metadata() or ()) == {"x-echo-one": "1", "x-echo-bin": b"\xff\x00"}
        trailers = dict(await call.trailing_metadata() or ())
        assert trailers["x-done-bin"] == b"\x01\x02" and trailers["x-echo-one"] == "1"
        got = dict(seen.metadata)
        assert got["traceparent"].startswith("00-0af7651916cd43dd")
        assert got["x-echo-bin"] == b"\xff\x00"
        assert not any(k.startswith(":") or k == "grpc-timeout" for k, _ in seen.metadata)
        rec = (await recorded(sink, 1))[0]
        assert ("x-echo-one", "1") in rec.request_metadata and rec.messages[0].data == request


async def test_deadline_and_cancellation_propagate(sock_dir: pathlib.Path) -> None:
    async with old_runtime_bridge(sock_dir) as (seen, _sink, channel):
        exec_sync = raw(channel, "/runtime.v1.RuntimeService/ExecSync")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await exec_sync(b"", timeout=1.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert seen.deadlines[0] is not None and 1.0 < seen.deadlines[0] <= 1.6
        await asyncio.wait_for(seen.cancelled.wait(), 2)  # the upstream call ended too

        seen.cancelled.clear()
        seen.started.clear()
        call = exec_sync(b"")  # no deadline: none is added
        await asyncio.wait_for(seen.started.wait(), 2)
        assert seen.deadlines[1] is None
        call.cancel()
        await asyncio.wait_for(seen.cancelled.wait(), 2)


# --- paths the bridge does not know: raw passthrough -------------------------------------------

@contextlib.asynccontextmanager
async def echo_bridge(sock_dir: pathlib.Path) -> AsyncIterator[tuple[backend.Seen, MemorySink, grpc.aio.Channel]]:
    server, seen = await backend.start_echo(f"unix://{sock_dir}/echo.sock")
    sink = MemorySink()
    async with probed_bridge(sock_dir, sock_dir / "echo.sock", sink=sink) as bridge:
        channel = backend.channel(bridge.address)
        try:
            yield seen, sink, channel
        finally:
            await channel.close(None)
        await server.stop(None)


async def test_unknown_methods_pass_through_every_call_shape(sock_dir: pathlib.Path) -> None:
    async with echo_bridge(sock_dir) as (seen, sink, channel):
        unary = backend.unary(channel, "/test.Echo/Unary")
        call = unary(b"hello", metadata=(("x-echo-a", "1"),))
        assert await call == b"hello"
        assert dict(await call.trailing_metadata() or ())["x-trailer-bin"] == b"\x00\x01\xff"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await backend.unary(channel, "/test.Echo/Fail")(b"PERMISSION_DENIED:no way")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details() == "no way"
        assert dict(err.value.trailing_metadata() or ())["x-why"] == "asked-to-fail"
        stream = channel.unary_stream("/test.Echo/ServerStream")(b"5")
        assert [m async for m in stream] == [b"message %d" % i for i in range(5)]
        client_stream = channel.stream_unary("/test.Echo/ClientStream")(iter([b"a", b"b", b"c"]))
        assert await client_stream == b"a|b|c"
        bidi = channel.stream_stream("/test.Echo/Bidi")(iter([b"x", b"y"]))
        assert [m async for m in bidi] == [b"echo:x", b"echo:y"]
        big = await backend.unary(channel, "/test.Echo/Big")(b"%d" % (20 << 20))
        assert len(big) == 20 << 20  # above grpcio's 4 MiB default, as the kubelet allows
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await backend.unary(channel, "/test.Nothing/Here")(b"")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        hang = backend.unary(channel, "/test.Echo/Hang")(b"", timeout=5)
        for _ in range(100):
            if seen.hang_deadlines:
                break
            await asyncio.sleep(0.02)
        assert seen.hang_deadlines and 4 < (seen.hang_deadlines[0] or 0) <= 5.1  # grpc rounds deadlines up
        hang.cancel()
        for _ in range(100):
            if seen.hang_cancelled:
                break
            await asyncio.sleep(0.02)
        assert seen.hang_cancelled == 1
        calls = await recorded(sink, 8)
        assert calls[0].path == "/test.Echo/Unary" and calls[0].client_api is None
        assert "passed through: not a method the bridge knows" in calls[0].notes


class OldV1Runtime(grpc.GenericRpcHandler):
    """A v1 runtime from before RuntimeConfig (containerd 1.6 answers it UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        self.paths.append(details.method)  # type: ignore[attr-defined]
        if details.method in ("/runtime.v1.RuntimeService/Version",  # type: ignore[attr-defined]
                              "/runtime.v1.ImageService/ImageFsInfo"):
            return grpc.unary_unary_rpc_method_handler(self.ok)
        return None

    async def ok(self, request: bytes, context: Any) -> bytes:
        return b""


@pytest.mark.parametrize("driver", [None, "cgroupfs"])
async def test_runtime_config_for_v1_runtime_without_it(sock_dir: pathlib.Path, driver: str | None) -> None:
    upstream = OldV1Runtime()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((upstream,))
    server.add_insecure_port(f"unix://{sock_dir}/rt.sock")
    await server.start()
    try:
        async with (probed_bridge(sock_dir, sock_dir / "rt.sock", cgroup_driver=driver) as bridge,
                    grpc.aio.insecure_channel(bridge.address) as channel):
            call = channel.unary_unary("/runtime.v1.RuntimeService/RuntimeConfig",
                                       response_deserializer=v1.RuntimeConfigResponse.FromString)
            if driver is None:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(b"")
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # the runtime's own answer
            else:
                assert (await call(b"")).linux.cgroup_driver == v1.CGROUPFS
        assert "/runtime.v1.RuntimeService/RuntimeConfig" in upstream.paths  # asked first
    finally:
        await server.stop(None)
