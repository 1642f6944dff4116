"""Image calls go to --image-endpoint when it differs: routing per connection, by its first call."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from hpack import Encoder
from hyperframe.frame import SettingsFrame

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.h2 import frames as h2
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.server import BridgeRoute, RelayServer
from tests.helpers.alike import method_of, observe, rpc_path
from tests.helpers.backend import channel, start_echo, unary
from tests.helpers.fakeruntime import KUBELET_CHANNEL_OPTIONS, run_pod
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.rawh2 import (
    RawClient,
    RawUpstream,
    drain,
    hello,
    raw_frame,
    request_headers,
    watch_goaway,
)

pytestmark = pytest.mark.timeout(30)

RUNTIME_CALL = "/runtime.v1.RuntimeService/Version"
IMAGE_CALL = "/runtime.v1.ImageService/ListImages"
OLD_IMAGE_CALL = "/runtime.v1alpha2.ImageService/ImageFsInfo"


@pytest.fixture
async def proxied(sock_dir: pathlib.Path) -> AsyncIterator[str]:
    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", sock_dir / "image.sock")
    await relay.start()
    yield f"unix://{sock_dir}/p.sock"
    await relay.stop(0)
    await runtime.stop(0)
    await image.stop(0)


@pytest.mark.parametrize("first", [RUNTIME_CALL, IMAGE_CALL, OLD_IMAGE_CALL])
async def test_each_connection_goes_where_its_first_call_belongs(proxied: str, first: str) -> None:
    expected = b"image" if "ImageService" in first else b"runtime"
    async with channel(proxied) as ch:
        for i in range(20):  # later calls of the same service ride the same connection
            assert await unary(ch, first)(b"%d" % i) == expected + b":%d" % i
        replies = await asyncio.gather(*(unary(ch, first)(b"c%d" % i) for i in range(20)))
        assert replies == [expected + b":c%d" % i for i in range(20)]


async def test_a_mixed_connection_gets_a_clear_error_and_keeps_working(
        proxied: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with channel(proxied) as ch:
        assert await unary(ch, RUNTIME_CALL)(b"1") == b"runtime:1"
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unary(ch, IMAGE_CALL)(b"2")
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "cannot be routed on this connection" in (err.value.details() or "")
            assert "image.sock" in (err.value.details() or "")
            # the connection (and both HPACK tables) are intact: runtime calls still work
            assert await unary(ch, RUNTIME_CALL)(b"3") == b"runtime:3"
    assert "cannot be routed" in caplog.text


async def test_image_calls_work_while_the_runtime_socket_is_down(sock_dir: pathlib.Path) -> None:
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", sock_dir / "image.sock")
    await relay.start()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            assert await unary(ch, IMAGE_CALL)(b"x") == b"image:x"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await unary(ch, RUNTIME_CALL)(b"y")
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await relay.stop(0)
        await image.stop(0)


async def test_the_refused_call_is_recorded_as_the_client_saw_it(sock_dir: pathlib.Path) -> None:
    from cri_proxy.model.sink import MemorySink
    from cri_proxy.recorder.tap import RecordingTap

    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    sink = MemorySink()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", sock_dir / "image.sock",
                        tap=RecordingTap(sink))
    await relay.start()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            assert await unary(ch, IMAGE_CALL)(b"1") == b"image:1"
            with pytest.raises(grpc.aio.AioRpcError):
                await unary(ch, RUNTIME_CALL)(b"2")
            assert await unary(ch, IMAGE_CALL)(b"3") == b"image:3"
    finally:
        await relay.stop(0)
        await runtime.stop(0)
        await image.stop(0)
    refused = [c for c in sink.calls if c.path == RUNTIME_CALL]
    assert len(refused) == 1 and refused[0].status_code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert "cannot be routed on this connection" in (refused[0].status_message or "")
    assert [c.status_code for c in sink.calls if c.path == IMAGE_CALL] == [0, 0]


def _heavy_blocks(sock_path: str, stop: threading.Event) -> int:
    """New connections, each opening with a 500 KB block of one-byte references (16.5 MB
    decoded), until `stop`: returns how many were sent."""
    block = bytes([0x83]) * 500_000  # :method POST, over and over
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    frames = [raw_frame(h2.HEADERS if i == 0 else h2.CONTINUATION,
                        h2.FLAG_END_HEADERS if i == len(pieces) - 1 else 0, 1, piece)
              for i, piece in enumerate(pieces)]
    sent = 0
    while not stop.is_set():
        with RawClient(sock_path, timeout=0.5) as client:  # a runtime may keep the connection after its reset
            try:
                client.send(hello() + b"".join(frames))
            except OSError:
                pass
            drain(client)
        sent += 1
    return sent


async def _steady_calls(address: str, seconds: float) -> list[str]:
    """50 calls a second, each with a 0.5 s deadline; what went wrong. The connection and its
    route are made first, by a call with a long deadline: on a loaded machine making them took
    longer than one call's 0.5 s, and they are no call that waits behind a block."""
    failures = []
    loop = asyncio.get_running_loop()
    async with channel(address) as ch:
        await unary(ch, RUNTIME_CALL)(b"first", timeout=10)
        start = loop.time()
        for i in range(int(seconds * 50)):
            await asyncio.sleep(max(0.0, start + i / 50 - loop.time()))
            try:
                await unary(ch, RUNTIME_CALL)(b"%d" % i, timeout=0.5)
            except grpc.aio.AioRpcError as exc:
                failures.append(f"call {i}: {exc.code().name}")
    return failures


async def _relay_split_or_first_call(sock_dir: pathlib.Path, image: bool) -> RelayServer:
    """A started relay that routes by service to two sockets (`image`), or one whose first call
    decides the route (a bridge that no call needs stands behind it)."""

    async def ready() -> None:
        pass

    bridge = BridgeRoute(sock_dir / "bridge.sock", needs=lambda path: False, ready=ready)
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock",
                        sock_dir / "image.sock" if image else None, bridge=None if image else bridge)
    await relay.start()
    return relay


@pytest.mark.timeout(60)
@pytest.mark.parametrize("image", [True, False], ids=["image-split", "first-call-only"])
async def test_a_huge_header_block_does_not_stall_other_connections(sock_dir: pathlib.Path, image: bool) -> None:
    # Issue 11.4: decoding such a block on the loop took ~1 s, and every connection waited.
    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image_server, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = await _relay_split_or_first_call(sock_dir, image)
    stop = threading.Event()
    heavy = asyncio.ensure_future(asyncio.to_thread(_heavy_blocks, str(sock_dir / "p.sock"), stop))
    try:
        failures = await _steady_calls(f"unix://{sock_dir}/p.sock", 4.0)
    finally:
        stop.set()
        sent = await heavy
        await relay.stop(0)
        await runtime.stop(0)
        await image_server.stop(0)
    assert sent >= 3
    assert failures == []


def _block_after_a_lowered_limit(sock_path: str, upstream: RawUpstream, ack: bool, shrink: bool) -> str:
    """The upstream limited the client's table to 0 bytes; the client sends its first request
    (after acknowledging that, or before): "forwarded", or the GOAWAY the relay answered."""
    encoder = Encoder()
    if shrink:
        encoder.header_table_size = 0
    block = encoder.encode(request_headers(RUNTIME_CALL))
    upstream.got_headers.clear()
    with RawClient(sock_path, timeout=5) as client:
        client.send(hello())
        while (frame := client._frame()) is not None and not isinstance(frame, SettingsFrame):
            pass  # the upstream's SETTINGS: the client has the new limit from here on
        ack_frame = raw_frame(h2.SETTINGS, h2.FLAG_ACK, 0, b"") if ack else b""
        client.send(ack_frame + raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS, 1, block))
        if ack and not shrink:  # refused: the relay's GOAWAY comes, and nothing went upstream
            code = watch_goaway(client)
            return "forwarded" if upstream.got_headers.is_set() else h2.ERROR_NAMES.get(code or 0, "no GOAWAY")
        return "forwarded" if upstream.got_headers.wait(5) else "not forwarded"


@pytest.mark.parametrize("image", [True, False], ids=["decoder", "first-call-only"])
async def test_a_lowered_table_size_must_be_followed_by_a_size_update(sock_dir: pathlib.Path, image: bool) -> None:
    # RFC 7541 §4.2: once the client acknowledged the smaller table, its next block must
    # shrink the table first; a block that does not is a COMPRESSION_ERROR, as the runtime says.
    settings = raw_frame(h2.SETTINGS, 0, 0, h2.SETTINGS_HEADER_TABLE_SIZE.to_bytes(2, "big") + (0).to_bytes(4, "big"))
    upstream = RawUpstream(str(sock_dir / "runtime.sock"), settings)
    image_server, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = await _relay_split_or_first_call(sock_dir, image)
    path = str(sock_dir / "p.sock")
    try:
        assert await asyncio.to_thread(_block_after_a_lowered_limit, path, upstream, True, False) == "COMPRESSION_ERROR"
        for ack, shrink in ((True, True), (False, False)):  # shrunk; or encoded before the client knew
            assert await asyncio.to_thread(_block_after_a_lowered_limit, path, upstream, ack, shrink) == "forwarded"
    finally:
        await relay.stop(0)
        upstream.close()
        await image_server.stop(0)


async def test_cli_sends_image_calls_to_the_image_endpoint(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "both")
    images = await start_fake_runtime(f"unix://{sock_dir}/img.sock", "both")
    proxy = ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", "--image-endpoint", f"unix://{sock_dir}/img.sock")
    await asyncio.to_thread(proxy.start)
    listen = f"unix://{sock_dir}/p.sock"
    # One connection per service, as the kubelet dials them; plus the direct ones. grpc-core
    # would otherwise share one connection between channels to the same address.
    options = [*KUBELET_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    channels = {name: grpc.aio.insecure_channel(address, options=options) for name, address in [
        ("runtime-svc", listen), ("image-svc", listen), ("runtime", runtime.address), ("images", images.address)]}
    try:
        pull = method_of("v1", "PullImage")
        ref = v1.PullImageRequest(image=v1.ImageSpec(image="quay.io/cri-proxy/only-on-image-runtime:2"))
        pulled = await observe(channels["image-svc"], rpc_path(pull), ref.SerializeToString())
        assert pulled.code == grpc.StatusCode.OK, pulled.details
        image_id = v1.PullImageResponse.FromString(pulled.messages[0]).image_ref
        assert images.state.images.find(image_id) and not runtime.state.images.find(image_id)

        for method in (method_of("v1", "ListImages"), method_of("v1alpha2", "ListImages")):
            on_images = await observe(channels["images"], rpc_path(method), b"")
            assert image_id.encode() in on_images.messages[0]
            assert image_id.encode() not in (await observe(channels["runtime"], rpc_path(method), b"")).messages[0]
            assert await observe(channels["image-svc"], rpc_path(method), b"") == on_images

        rt = v1_grpc.RuntimeServiceStub(channels["runtime-svc"])
        pod = await run_pod(rt)
        assert pod in runtime.state.pods and not images.state.pods
        for method in (method_of("v1", "ListPodSandbox"), method_of("v1", "Version")):
            direct = await observe(channels["runtime"], rpc_path(method), b"")
            assert await observe(channels["runtime-svc"], rpc_path(method), b"") == direct
        # A connection carries one service (split.py): an image call on the runtime
        # connection is refused by the proxy, saying why, rather than sent to the wrong runtime.
        status = v1.ImageStatusRequest(image=v1.ImageSpec(image=image_id)).SerializeToString()
        refused = await observe(channels["runtime-svc"], rpc_path(method_of("v1", "ImageStatus")), status)
        assert refused.code == grpc.StatusCode.UNIMPLEMENTED and "separate connection" in (refused.details or "")
    finally:
        for ch in channels.values():
            await ch.close(None)
        code = await asyncio.to_thread(proxy.stop)
        await runtime.stop(None)
        await images.stop(None)
    assert code == 0, proxy.log()
