"""The tap rebuilds every call from the relay's frames (real gRPC traffic, and hand-made frames).

`python -m tests.test_record_tap` runs a micro-benchmark of the tap's cost per small unary call.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pathlib
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hpack import Decoder as ReferenceHpack
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from cri_proxy.forward import frames as h2
from cri_proxy.forward.server import RelayServer
from cri_proxy.forward.tap import ConnectionInfo
from cri_proxy.record import hpack_fast
from cri_proxy.record.call import Direction, Outcome, RecordedCall
from cri_proxy.record.sink import MemorySink
from cri_proxy.record.tap import ConnectionRecorder, RecordingTap, ReferenceDecoder
from tests.backend import Seen, _same, channel, start_echo, unary

pytestmark = pytest.mark.timeout(20)


# Real traffic ---------------------------------------------------------------------------
@dataclass
class Setup:
    direct: str
    proxied: str
    sink: MemorySink
    relay: RelayServer
    seen: Seen

    async def calls(self, count: int, timeout: float = 5.0) -> list[RecordedCall]:
        """The recorded calls, once `count` have arrived (a call ends on the server's last frame)."""
        deadline = time.monotonic() + timeout
        while len(self.sink.calls) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # nothing more should come
        assert len(self.sink.calls) == count, [c.path for c in self.sink.calls]
        return self.sink.calls


@pytest.fixture
async def setup(sock_dir: pathlib.Path) -> AsyncIterator[Setup]:
    backend, seen = await start_echo(f"unix://{sock_dir}/up.sock")
    sink = MemorySink()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", tap=RecordingTap(sink))
    await relay.start()
    yield Setup(f"unix://{sock_dir}/up.sock", f"unix://{sock_dir}/p.sock", sink, relay, seen)
    await relay.stop(0)
    await backend.stop(0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def messages(call: RecordedCall, direction: Direction) -> list[bytes]:
    found = [m for m in call.messages if m.direction is direction]
    assert [m.index for m in found] == list(range(len(found)))
    return [m.data for m in found]


def md(metadata: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in metadata if k == name]


async def test_unary_call_is_recorded_with_metadata_messages_and_trailers(setup: Setup) -> None:
    trace = "00-" + os.urandom(16).hex() + "-" + os.urandom(8).hex() + "-01"
    before = time.time()
    async with channel(setup.proxied) as ch:
        call = unary(ch, "/test.Echo/Unary")(b"hello", metadata=(
            ("traceparent", trace), ("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff\x10")))
        assert await call == b"hello"
    [rec] = await setup.calls(1)
    assert (rec.path, rec.service, rec.method) == ("/test.Echo/Unary", "test.Echo", "Unary")
    assert rec.outcome is Outcome.COMPLETED and rec.status_code == 0 and rec.notes == []
    assert rec.client_api is None and rec.upstream_api is None  # not a CRI path
    assert rec.upstream == f"unix://{setup.relay.runtime_path}"
    assert (rec.peer_pid, rec.peer_uid) == (os.getpid(), os.getuid())
    assert before <= rec.started_at <= time.time() and rec.duration_s is not None and 0 < rec.duration_s < 5
    assert md(rec.request_metadata, "traceparent") == [trace]
    assert md(rec.request_metadata, "x-echo-a") == ["1"]
    assert md(rec.request_metadata, "x-echo-b-bin") == [b64(b"\x00\xff\x10")]
    assert md(rec.request_metadata, "content-type") == ["application/grpc"]
    assert not any(k.startswith(":") for k, _ in rec.request_metadata + rec.response_metadata + rec.trailers)
    assert md(rec.response_metadata, "x-echo-a") == ["1"]
    assert md(rec.trailers, "x-echo-a") == ["1"] and md(rec.trailers, "grpc-status") == ["0"]
    assert [v.rstrip("=") for v in md(rec.trailers, "x-trailer-bin")] == [b64(b"\x00\x01\xff")]
    assert messages(rec, Direction.REQUEST) == [b"hello"] and messages(rec, Direction.RESPONSE) == [b"hello"]
    assert rec.request_bytes == rec.response_bytes == 5
    assert all(0 <= m.offset_s <= rec.duration_s and not m.compressed for m in rec.messages)


async def test_failed_call_has_its_status_and_percent_decoded_message(setup: Setup) -> None:
    details = "pod sandbox \"abc\" not found: ünïcode détails 100%"
    async with channel(setup.proxied) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "/test.Echo/Fail")(f"NOT_FOUND:{details}".encode())
    assert err.value.details() == details
    [rec] = await setup.calls(1)
    assert rec.outcome is Outcome.COMPLETED
    assert (rec.status_code, rec.status_message) == (grpc.StatusCode.NOT_FOUND.value[0], details)
    assert md(rec.trailers, "x-why") == ["asked-to-fail"]
    assert rec.response_metadata == []  # a trailers-only response: a single HEADERS frame
    assert messages(rec, Direction.RESPONSE) == []


async def test_unknown_method_is_recorded(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(ch, "/no.Such/Service")(b"x")
    [rec] = await setup.calls(1)
    assert rec.path == "/no.Such/Service" and rec.status_code == grpc.StatusCode.UNIMPLEMENTED.value[0]


async def test_15_mib_reply_is_reassembled(setup: Setup) -> None:
    size = 15 << 20
    async with channel(setup.proxied) as ch:
        reply = await unary(ch, "/test.Echo/Big")(str(size).encode())
    [rec] = await setup.calls(1)
    [body] = messages(rec, Direction.RESPONSE)
    assert len(body) == size and body == reply and rec.response_bytes == size


async def test_streams_keep_every_message_in_order(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        streamed = [m async for m in ch.unary_stream(
            "/test.Echo/ServerStream", request_serializer=_same, response_deserializer=_same)(b"50")]
        joined = await ch.stream_unary("/test.Echo/ClientStream", request_serializer=_same,
                                       response_deserializer=_same)(iter([b"a", b"bb", b"", b"c"]))
        bidi = ch.stream_stream("/test.Echo/Bidi", request_serializer=_same, response_deserializer=_same)()
        for word in (b"x", b"y", b"z"):
            await bidi.write(word)
            await bidi.read()
        await bidi.done_writing()
        assert await bidi.read() is grpc.aio.EOF
    server_stream, client_stream, bidi_call = await setup.calls(3)
    assert messages(server_stream, Direction.RESPONSE) == streamed == [b"message %d" % i for i in range(50)]
    assert messages(client_stream, Direction.REQUEST) == [b"a", b"bb", b"", b"c"]
    assert messages(client_stream, Direction.RESPONSE) == [joined]
    assert messages(bidi_call, Direction.REQUEST) == [b"x", b"y", b"z"]
    assert messages(bidi_call, Direction.RESPONSE) == [b"echo:x", b"echo:y", b"echo:z"]
    assert all(c.outcome is Outcome.COMPLETED and c.status_code == 0 for c in setup.sink.calls)


async def test_cancelled_call(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        call = unary(ch, "/test.Echo/Hang")(b"")
        while not setup.seen.hang_deadlines:
            await asyncio.sleep(0.01)
        call.cancel()
        [rec] = await setup.calls(1)
    assert rec.outcome is Outcome.CANCELLED and rec.status_code is None
    assert "client reset the stream: CANCEL (8)" in rec.notes and rec.duration_s is not None


async def test_deadline_exceeded_call(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await unary(ch, "/test.Echo/Hang")(b"", timeout=0.3)
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        [rec] = await setup.calls(1)
    assert md(rec.request_metadata, "grpc-timeout")
    # The client resets the stream at its deadline; the server may have answered first.
    assert rec.outcome is Outcome.CANCELLED or rec.status_code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


async def test_connection_closed_mid_call(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        call = unary(ch, "/test.Echo/Hang")(b"waiting")
        while not setup.seen.hang_deadlines:
            await asyncio.sleep(0.01)
        for conn in list(setup.relay.connections):
            conn.close()
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        [rec] = await setup.calls(1)
    assert rec.outcome is Outcome.CONNECTION_CLOSED and rec.duration_s is None
    assert messages(rec, Direction.REQUEST) == [b"waiting"]
    assert any(n.startswith("connection closed") for n in rec.notes)


async def test_many_concurrent_calls_on_one_connection(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        method = unary(ch, "/test.Echo/Unary")
        payloads = [os.urandom(random.randrange(0, 40000)) for _ in range(60)]
        replies = await asyncio.gather(*(method(p, metadata=(("x-echo-n", str(i)),)) for i, p in enumerate(payloads)))
        assert replies == payloads
    recs = await setup.calls(60)
    assert len({r.conn_id for r in recs}) == 1 and len({r.stream_id for r in recs}) == 60
    for rec in recs:
        [n] = md(rec.request_metadata, "x-echo-n")
        assert messages(rec, Direction.REQUEST) == messages(rec, Direction.RESPONSE) == [payloads[int(n)]]
        assert md(rec.trailers, "x-echo-n") == [n] and rec.outcome is Outcome.COMPLETED


async def test_the_tap_changes_nothing_the_client_sees(setup: Setup) -> None:
    async def outcome(address: str, method: str, request: bytes, **kwargs: Any) -> tuple[Any, ...]:
        async with channel(address) as ch:
            call = unary(ch, method)(request, **kwargs)
            try:
                reply = await call
            except grpc.aio.AioRpcError as exc:
                return ("error", exc.code(), exc.details(), tuple(exc.trailing_metadata() or ()))
            return ("ok", reply, tuple(await call.initial_metadata()), tuple(await call.trailing_metadata()))

    cases: list[tuple[str, bytes, Any]] = [
        ("/test.Echo/Unary", b"hello", (("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff"))),
        ("/test.Echo/Fail", "ABORTED:détails".encode(), ()),
        ("/test.Echo/Big", b"3000000", ()),
    ]
    for method, request, metadata in cases:
        assert await outcome(setup.proxied, method, request, metadata=metadata) == \
            await outcome(setup.direct, method, request, metadata=metadata)
    await setup.calls(len(cases))


class RaisingSink:
    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, call: RecordedCall) -> None:
        self.submitted += 1
        raise RuntimeError("the recorder is broken")


async def test_a_sink_that_raises_never_stops_forwarding(sock_dir: pathlib.Path) -> None:
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    sink = RaisingSink()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "up.sock", tap=RecordingTap(sink))
    await relay.start()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            for i in range(5):  # all on one connection: its tap must stay attached
                assert await unary(ch, "/test.Echo/Unary")(b"%d" % i) == b"%d" % i
            assert all(conn.tap is not None for conn in relay.connections)
        assert sink.submitted == 5
    finally:
        await relay.stop(0)
        await backend.stop(0)


async def test_cri_calls_through_the_generated_stubs(sock_dir: pathlib.Path) -> None:
    from cri_proxy.fakeruntime import start_fake_runtime
    from cri_proxy.pb.runtime.v1 import api_pb2 as v1
    from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
    from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1a2
    from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1a2_grpc

    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock")
    sink = MemorySink()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock", tap=RecordingTap(sink))
    await relay.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as ch:
            rt = v1_grpc.RuntimeServiceStub(ch)
            version = await rt.Version(v1.VersionRequest(version="v1"), metadata=(("traceparent", "00-ab-cd-01"),))
            config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="web", namespace="default", uid="u1"))
            pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
            listed = await rt.ListPodSandbox(v1.ListPodSandboxRequest())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id="missing"))
            old = await v1a2_grpc.RuntimeServiceStub(ch).Version(v1a2.VersionRequest())
        recs = sink.calls
        assert [r.method for r in recs] == ["Version", "RunPodSandbox", "ListPodSandbox", "PodSandboxStatus", "Version"]
        assert [r.client_api for r in recs] == ["v1"] * 4 + ["v1alpha2"]
        assert all(r.upstream_api == r.client_api for r in recs)
        assert md(recs[0].request_metadata, "traceparent") == ["00-ab-cd-01"]

        def parsed(rec: RecordedCall, direction: Direction, kind: Any) -> Any:
            [data] = messages(rec, direction)
            return kind.FromString(data)

        assert parsed(recs[0], Direction.REQUEST, v1.VersionRequest).version == "v1"
        assert parsed(recs[0], Direction.RESPONSE, v1.VersionResponse) == version
        assert parsed(recs[1], Direction.REQUEST, v1.RunPodSandboxRequest).config == config
        assert parsed(recs[1], Direction.RESPONSE, v1.RunPodSandboxResponse) == pod
        assert parsed(recs[2], Direction.RESPONSE, v1.ListPodSandboxResponse) == listed
        assert recs[3].status_code == err.value.code().value[0] and recs[3].status_message == err.value.details()
        assert parsed(recs[4], Direction.RESPONSE, v1a2.VersionResponse) == old
    finally:
        await relay.stop(0)
        await runtime.stop(None)
