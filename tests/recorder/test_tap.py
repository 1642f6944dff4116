"""The tap rebuilds every call from the relay's frames (real gRPC traffic, and hand-made frames).

`python -m tests.recorder.test_tap` runs a micro-benchmark of the tap's cost per small unary call.
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
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Direction, Outcome, RecordedCall
from cri_proxy.model.sink import MemorySink
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.tap import RecordingTap, ReferenceDecoder
from tests.helpers.backend import Seen, _same, channel, outcome, start_echo, unary
from tests.helpers.calls import rows
from tests.helpers.tapwire import RaisingSink, Wire, messages, prefixed

pytestmark = pytest.mark.timeout(20)


# Real traffic ---------------------------------------------------------------------------
BARRIER = b"barrier: the next call recorded"


@dataclass
class Setup:
    direct: str
    proxied: str
    sink: MemorySink
    relay: RelayServer
    seen: Seen

    async def calls(self, count: int, timeout: float = 5.0) -> list[RecordedCall]:
        """The recorded calls, once `count` have arrived (a call ends on the server's last frame).

        That nothing more comes is checked with a barrier, not a sleep: one more call, on a
        connection of its own, must be the next one recorded (then it is taken off again)."""
        await self._arrived(count, timeout)
        assert await outcome(self.proxied, "/test.Echo/Unary", BARRIER) == \
            await outcome(self.direct, "/test.Echo/Unary", BARRIER)
        await self._arrived(count + 1, timeout)
        assert len(self.sink.calls) == count + 1, [c.path for c in self.sink.calls]
        assert messages(self.sink.calls[-1], Direction.REQUEST) == [BARRIER], [c.path for c in self.sink.calls]
        self.sink.calls.pop()
        return self.sink.calls

    async def _arrived(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.sink.calls) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


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


async def test_calls_repeating_a_large_body_share_one_copy_of_it(setup: Setup) -> None:
    large, other = b"L" * 300_000, b"O" * 300_000
    async with channel(setup.proxied) as ch:
        for body in (large, large, other, b"tiny", b"tiny", large):
            assert await unary(ch, "/test.Echo/Unary")(body) == body
    recs = await setup.calls(6)
    requests = [messages(rec, Direction.REQUEST)[0] for rec in recs]
    replies = [messages(rec, Direction.RESPONSE)[0] for rec in recs]
    assert requests == replies == [large, large, other, b"tiny", b"tiny", large]
    assert requests[0] is requests[1] and replies[0] is replies[1]  # one copy for the two calls
    assert requests[0] is not replies[0]  # each kind (method, direction) on its own
    assert requests[5] is not requests[0]  # the other body came between: this one is the last seen


async def test_streams_keep_every_message_in_order(setup: Setup) -> None:
    async with channel(setup.proxied) as ch:
        streamed = [m async for m in ch.unary_stream(
            "/test.Echo/ServerStream", request_serializer=_same, response_deserializer=_same)(b"50")]
        joined = await ch.stream_unary("/test.Echo/ClientStream", request_serializer=_same,
                                       response_deserializer=_same)(iter([b"a", b"bb", b"", b"c"]))
        bidi = ch.stream_stream(  # type: ignore[call-arg]  # grpc-stubs lag grpc.aio
            "/test.Echo/Bidi", request_serializer=_same, response_deserializer=_same)()
        for word in (b"x", b"y", b"z"):
            await bidi.write(word)
            await bidi.read()
        await bidi.done_writing()
        assert await bidi.read() is grpc.aio.EOF  # type: ignore[attr-defined]
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
    cases: list[tuple[str, bytes, Any]] = [
        ("/test.Echo/Unary", b"hello", (("x-echo-a", "1"), ("x-echo-b-bin", b"\x00\xff"))),
        ("/test.Echo/Fail", "ABORTED:détails".encode(), ()),
        ("/test.Echo/Big", b"3000000", ()),
    ]
    for method, request, metadata in cases:
        assert await outcome(setup.proxied, method, request, metadata=metadata) == \
            await outcome(setup.direct, method, request, metadata=metadata)
    await setup.calls(len(cases))


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


async def test_split_endpoints_record_the_upstream_each_call_went_to(sock_dir: pathlib.Path) -> None:
    runtime, _ = await start_echo(f"unix://{sock_dir}/rt.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/im.sock", "image")
    sink = MemorySink()
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "rt.sock", sock_dir / "im.sock", tap=RecordingTap(sink))
    await relay.start()
    try:
        for method in ("/runtime.v1.ImageService/ListImages", "/runtime.v1.RuntimeService/Version"):
            async with channel(f"unix://{sock_dir}/p.sock") as ch:  # a connection each, as the kubelet does
                for n in range(2):
                    server = b"image:" if "Image" in method else b"runtime:"
                    assert await unary(ch, method)(b"%d" % n) == server + b"%d" % n
        deadline = time.monotonic() + 5
        while len(sink.calls) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [(c.method, c.upstream, c.outcome) for c in sink.calls] == [
            ("ListImages", f"unix://{sock_dir}/im.sock", Outcome.COMPLETED)] * 2 + [
            ("Version", f"unix://{sock_dir}/rt.sock", Outcome.COMPLETED)] * 2
        assert [messages(c, Direction.REQUEST) for c in sink.calls] == [[b"0"], [b"1"]] * 2
    finally:
        await relay.stop(0)
        await runtime.stop(0)
        await image.stop(0)


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


# Hand-made frames ------------------------------------------------------------------------
def test_padding_priority_and_continuation(wire: Wire) -> None:
    block = wire.client_enc.encode([(":method", "POST"), (":path", "/runtime.v1.ImageService/ListImages"),
                                    ("x-big", "v" * 3000), ("traceparent", "00-1-2-01")], huffman=True)
    third = len(block) // 3
    first = HeadersFrame(1, data=block[:third], flags=["PADDED", "PRIORITY"], pad_length=17,
                         depends_on=0, stream_weight=15)
    wire.client(first, ContinuationFrame(1, data=block[third:2 * third]),
                ContinuationFrame(1, data=block[2 * third:], flags=["END_HEADERS"]))
    wire.client(DataFrame(1, prefixed(b"ask"), flags=["PADDED", "END_STREAM"], pad_length=40))
    head, tail = wire.answer(1, 3, "bad%20thing")
    head.flags.add("PADDED")
    head.pad_length = 5
    wire.server(head, DataFrame(1, prefixed(b"one") + prefixed(b"two", compressed=True), flags=["PADDED"],
                                pad_length=1), tail)
    [rec] = wire.sink.calls
    assert rec.path == "/runtime.v1.ImageService/ListImages" and rec.client_api == "v1"
    assert md(rec.request_metadata, "x-big") == ["v" * 3000] and md(rec.request_metadata, "traceparent")
    assert [(m.direction, m.index, m.data, m.compressed) for m in rec.messages] == [
        (Direction.REQUEST, 0, b"ask", False), (Direction.RESPONSE, 0, b"one", False),
        (Direction.RESPONSE, 1, b"two", True)]
    assert (rec.status_code, rec.status_message, rec.outcome) == (3, "bad thing", Outcome.COMPLETED)
    assert (rec.conn_id, rec.stream_id, rec.peer_pid, rec.peer_uid, rec.upstream) == (7, 1, 100, 200, "unix:///up.sock")


def test_messages_split_at_every_byte_boundary(wire: Wire) -> None:
    sent = [b"abc", b"", bytes(range(256)) * 2, b"z"]
    stream = b"".join(prefixed(m, compressed=i == 2) for i, m in enumerate(sent))
    for cut in range(len(stream) + 1):
        sid = 2 * cut + 1
        wire.client(wire.request(sid), DataFrame(sid, stream[:cut]), DataFrame(sid, stream[cut:], flags=["END_STREAM"]))
        head, tail = wire.answer(sid)
        wire.server(head, *(DataFrame(sid, stream[i:i + 97]) for i in range(0, len(stream), 97)), tail)
        wire.server()  # an empty batch is harmless
    assert len(wire.sink.calls) == len(stream) + 1
    for rec in wire.sink.calls:
        assert messages(rec, Direction.REQUEST) == messages(rec, Direction.RESPONSE) == sent and rec.notes == []
        assert [m.compressed for m in rec.messages if m.direction is Direction.REQUEST] == [False, False, True, False]
    one_by_one = Wire()
    one_by_one.client(one_by_one.request(1), *(DataFrame(1, stream[i:i + 1]) for i in range(len(stream))))
    one_by_one.server(*one_by_one.answer(1, trailers_only=True))
    assert messages(one_by_one.sink.calls[0], Direction.REQUEST) == sent


def test_interleaved_streams(wire: Wire) -> None:
    ids = [1, 3, 5, 7]
    wire.client(*(wire.request(i, f"/test.Echo/M{i}") for i in ids))
    wire.client(*(DataFrame(i, prefixed(b"req%d" % i)[:4]) for i in ids))
    wire.client(*(DataFrame(i, prefixed(b"req%d" % i)[4:], flags=["END_STREAM"]) for i in ids))
    enc = wire.server_enc  # blocks are encoded in the order they go out: HPACK state is shared
    wire.server(*(HeadersFrame(i, data=enc.encode([(":status", "200")]), flags=["END_HEADERS"]) for i in ids[::-1]),
                *(DataFrame(i, prefixed(b"rep%d" % i)) for i in ids))
    wire.server(*(HeadersFrame(i, data=enc.encode([("grpc-status", str(i))]), flags=["END_HEADERS", "END_STREAM"])
                  for i in ids[::-1]))
    assert [r.stream_id for r in wire.sink.calls] == ids[::-1]
    for rec in wire.sink.calls:
        i = rec.stream_id
        assert rec.path == f"/test.Echo/M{i}" and rec.status_code == i
        assert messages(rec, Direction.REQUEST) == [b"req%d" % i]
        assert messages(rec, Direction.RESPONSE) == [b"rep%d" % i]


def test_table_size_follows_settings(wire: Wire) -> None:
    big = tuple((f"x-h{i}", "v" * 200) for i in range(30))  # about 7 KB: needs a table above 4096
    wire.server(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 16384}))
    wire.client(SettingsFrame(0, flags=["ACK"]))
    wire.client_enc.header_table_size = 16384  # the next block starts with a size update
    wire.client(wire.request(1, extra=big))
    wire.client(wire.request(3, extra=big))  # mostly indexed from the larger table
    wire.client_enc.header_table_size = 0  # shrink to nothing, then back
    wire.client(wire.request(5, extra=big))
    wire.client_enc.header_table_size = 4096
    wire.client(wire.request(7, extra=big))
    for sid in (1, 3, 5, 7):
        wire.server(*wire.answer(sid, trailers_only=True))
    assert [r.outcome for r in wire.sink.calls] == [Outcome.COMPLETED] * 4
    assert all(md(r.request_metadata, "x-h29") == ["v" * 200] for r in wire.sink.calls)


def test_a_table_larger_than_the_server_allowed_is_unparsed(wire: Wire) -> None:
    wire.client_enc.header_table_size = 65536  # the server never allowed more than 4096
    wire.client(wire.request(1))
    wire.server(*wire.answer(1, trailers_only=True))
    [rec] = wire.sink.calls
    assert rec.outcome is Outcome.UNPARSED and rec.path == ""


def test_a_lowered_table_size_must_be_followed_by_a_size_update(wire: Wire) -> None:
    # RFC 7541 §4.2: the server limited the client's table to 0 and the client acknowledged it;
    # a block that does not shrink the table first is not HPACK the runtime would take.
    wire.client(wire.request(1))  # fills the client's table
    wire.server(*wire.answer(1, trailers_only=True))
    wire.server(SettingsFrame(0, settings={SettingsFrame.HEADER_TABLE_SIZE: 0}))
    wire.client(wire.request(3))  # encoded before the client had the new limit: fine
    wire.client(SettingsFrame(0, flags=["ACK"]))
    wire.client(wire.request(5))  # the encoder was never told: no size update
    for sid in (3, 5):
        wire.server(*wire.answer(sid, trailers_only=True))
    assert [r.outcome for r in wire.sink.calls] == [Outcome.COMPLETED, Outcome.COMPLETED, Outcome.UNPARSED]
    assert wire.sink.calls[2].path == ""


def test_an_interrupted_header_block_is_unparsed(wire: Wire) -> None:
    block = wire.client_enc.encode([(":path", "/a/B")])
    wire.client(HeadersFrame(1, data=block), DataFrame(1, prefixed(b"x")))  # CONTINUATION expected
    wire.unary(3)
    wire.tap.closed(None)
    assert [(c.stream_id, c.outcome) for c in wire.sink.calls] == [(3, Outcome.UNPARSED), (1, Outcome.UNPARSED)]
    assert "request headers unreadable, path unknown: a header block was interrupted by a frame of type 0" \
        in wire.sink.calls[1].notes and messages(wire.sink.calls[1], Direction.REQUEST) == [b"x"]


def test_resets_goaway_and_close(wire: Wire) -> None:
    wire.client(wire.request(1), wire.request(3), wire.request(5), wire.request(7))
    wire.server(wire.answer(1)[0], RstStreamFrame(1, error_code=2))
    wire.client(RstStreamFrame(3, error_code=8))
    wire.server(GoAwayFrame(0, last_stream_id=7, error_code=0, additional_data=b"bye"))
    wire.server(RstStreamFrame(99, error_code=8))  # a stream never seen: nothing to record
    wire.tap.closed("Connection reset by peer")
    wire.tap.closed(None)  # a second close finds nothing open
    server_reset, client_reset, *closed = wire.sink.calls
    assert server_reset.outcome is Outcome.CANCELLED
    assert "server reset the stream: INTERNAL_ERROR (2)" in server_reset.notes
    assert client_reset.outcome is Outcome.CANCELLED and "client reset the stream: CANCEL (8)" in client_reset.notes
    assert [c.stream_id for c in closed] == [5, 7]
    for call in closed:
        assert call.outcome is Outcome.CONNECTION_CLOSED and call.duration_s is None
        assert "server sent GOAWAY: last stream 7, NO_ERROR (0), b'bye'" in call.notes
        assert any(n.startswith("connection lost: Connection reset by peer") for n in call.notes)


def test_a_frame_the_tap_chokes_on_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    wire.client(wire.request(1))
    nonsense = h2.Frame(h2.DATA, h2.FLAG_PADDED, 1, 3, 123)  # type: ignore[arg-type]  # no walker makes this
    wire.tap.client_frames([nonsense, nonsense, *Wire.walked((wire.request(3),))])
    wire.server(*wire.answer(1, trailers_only=True))
    wire.unary(5)
    wire.tap.closed(None)
    assert [(c.stream_id, c.outcome) for c in wire.sink.calls] == [
        (1, Outcome.UNPARSED), (5, Outcome.UNPARSED), (3, Outcome.UNPARSED)]
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1


def test_a_cut_message_is_noted() -> None:
    wire = Wire()
    wire.client(wire.request(1), DataFrame(1, prefixed(b"abcdef")[:8], flags=["END_STREAM"]))
    wire.server(*wire.answer(1, trailers_only=True))
    [rec] = wire.sink.calls
    assert "request message cut short (3 of 6 bytes)" in rec.notes and rec.messages == []


# Micro-benchmark (python -m tests.recorder.test_tap) ------------------------------------------
def _bench_calls(count: int, fresh: bool) -> list[tuple[list[h2.Frame], list[h2.Frame]]]:
    """Frames of `count` small unary calls as grpc-go sends them (Huffman, indexing)."""
    out = []
    client_enc, server_enc = Encoder(), Encoder()
    for n in range(count):
        if fresh:
            client_enc, server_enc = Encoder(), Encoder()
        sid = 1 if fresh else 2 * n + 1
        trace = "00-" + os.urandom(16).hex() + "-" + os.urandom(8).hex() + "-01"
        request = client_enc.encode([
            (":method", "POST"), (":scheme", "http"), (":path", "/runtime.v1.RuntimeService/PodSandboxStatus"),
            (":authority", "localhost"), ("content-type", "application/grpc"), ("user-agent", "grpc-go/1.58.3"),
            ("te", "trailers"), ("grpc-timeout", "1999937u"), ("traceparent", trace)], huffman=True)
        head = server_enc.encode([(":status", "200"), ("content-type", "application/grpc")], huffman=True)
        tail = server_enc.encode([("grpc-status", "0"), ("grpc-message", "")], huffman=True)
        client = Wire.walked((HeadersFrame(sid, data=request, flags=["END_HEADERS"]),
                              DataFrame(sid, prefixed(b"\n@" + b"a" * 64), flags=["END_STREAM"])))
        server = Wire.walked((HeadersFrame(sid, data=head, flags=["END_HEADERS"]),
                              DataFrame(sid, prefixed(b"\n\x80\x02" + b"s" * 256)),
                              HeadersFrame(sid, data=tail, flags=["END_HEADERS", "END_STREAM"])))
        out.append((client, server))
    return out


def _bench(decoder: Callable[[], Any], calls: list[tuple[list[h2.Frame], list[h2.Frame]]], fresh: bool) -> float:
    best = float("inf")
    for _ in range(15):
        sink = MemorySink()
        tap = RecordingTap(sink, decoder=decoder)
        info = ConnectionInfo(1, 1, 0, "unix:///up.sock")
        conn = tap.open(info)
        start = time.process_time()  # CPU time: other processes on the machine add less noise
        for client, server in calls:
            if fresh:
                conn = tap.open(info)
            conn.client_frames(client)
            conn.server_frames(server)
        best = min(best, (time.process_time() - start) / len(calls))
        assert len(sink.calls) == len(calls) and sink.calls[-1].status_code == 0
    return best * 1e6


if __name__ == "__main__":
    from cri_proxy.recorder.tap import fast_decoder

    print(f"request header block: {len(_bench_calls(2, True)[0][0][0].payload or b'')} B fresh, "
          f"{len(_bench_calls(2, False)[1][0][0].payload or b'')} B on a warm connection")
    for fresh in (False, True):
        calls = _bench_calls(2000, fresh)
        for name, decoder in (("hpack_fast", fast_decoder), ("hpack (reference)", ReferenceDecoder)):
            label = "new connection per call" if fresh else "one connection"
            print(f"{label:>24}, {name:>17}: {_bench(decoder, calls, fresh):6.1f} us per call")


# Gaps and floods ---------------------------------------------------------------------------
def _pull_image(wire: Wire, stream_id: int, password: str) -> list[Any]:
    from cri_proxy.pb.runtime.v1 import api_pb2 as v1

    request = v1.PullImageRequest(image=v1.ImageSpec(image="registry.example/app:1"),
                                  auth=v1.AuthConfig(username="robot", password=password))
    return [wire.request(stream_id, "/runtime.v1.ImageService/PullImage"),
            DataFrame(stream_id, prefixed(request.SerializeToString()), flags=["END_STREAM"])]


def test_after_a_gap_no_secret_reaches_the_database(tmp_path: pathlib.Path) -> None:
    """The recorder fell behind and the proxy dropped bytes (GAP): the calls after it have no
    path, so redaction by method cannot apply; none of their bodies may be stored."""
    import socket

    from cri_proxy.model import link
    from cri_proxy.model.options import RecordConfig
    from cri_proxy.model.session import SessionInfo
    from cri_proxy.recorder.setup import make_recorder
    from cri_proxy.recorder.loop import Worker

    path = tmp_path / "calls.db"
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    ours, theirs = socket.socketpair()
    worker = Worker(ours, recorder)
    wire = Wire()  # its encoders and frames; the bytes go through the worker's link messages
    reader = link.Reader()

    def send(message: bytes) -> None:
        reader.feed(message, worker.handle)

    def chunk(from_client: bool, frames: list[Any]) -> None:
        data = b"".join(bytes(f.serialize()) for f in frames)
        reader.feed(link.chunk_head(7, from_client, time.time(), time.monotonic(), len(data)) + data, worker.handle)

    secrets = ["hunter2-before-the-gap", "s3cr3t-open-at-the-gap", "pa55w0rd-after-the-gap"]
    try:
        send(link.open_message(7, 100, 200, "unix:///up.sock"))
        chunk(True, _pull_image(wire, 1, secrets[0]))  # a whole call, with its path: redacted by method
        chunk(False, wire.answer(1))
        chunk(True, [wire.request(3, "/runtime.v1.ImageService/PullImage")])  # open when the gap comes
        send(link.gap_message(7, True, time.monotonic()))
        chunk(True, [DataFrame(3, prefixed(b"\x12\x20" + secrets[1].encode()), flags=["END_STREAM"])])
        chunk(False, wire.answer(3))
        chunk(True, _pull_image(wire, 5, secrets[2]))  # its headers cannot be decoded any more
        chunk(False, wire.answer(5))
        send(link.closed_message(7, time.monotonic(), None))
        while recorder.stats.recorded < 3:
            assert recorder.pump() is not None
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        for blob in [f.read_bytes() for f in files if f.exists()]:
            assert not any(s.encode() in blob for s in secrets)
        recorder.close()
    finally:
        ours.close()
        theirs.close()
    stored = b"".join(f.read_bytes() for f in files if f.exists())
    assert not any(s.encode() in stored for s in secrets) and b"robot" not in stored  # usernames are redacted too
    got = rows(path, "SELECT stream_id, path, outcome, redacted, notes FROM calls ORDER BY stream_id")
    assert [(r[0], r[1], r[2], r[3]) for r in got] == [
        (1, "/runtime.v1.ImageService/PullImage", "completed", 1),
        (3, "/runtime.v1.ImageService/PullImage", "unparsed", 0),
        (5, "", "unparsed", 1)]
    assert "request messages after a gap in the bytes are not recorded" in got[1][4]
    assert "redacted: method unknown, every message dropped (1)" in got[2][4]
    assert rows(path, "SELECT count(*) FROM messages WHERE call_id = (SELECT id FROM calls WHERE stream_id = 5) "
                      "AND payload_id IN (SELECT id FROM payloads WHERE size = 0)") == [(1,)]


def test_while_the_relay_thins_a_direction_the_calls_keep_their_headers(tmp_path: pathlib.Path) -> None:
    """The proxy's outbox passed its limit at a frame boundary (proxy.recorder_out): it sends
    that direction's frames without DATA until the recorder has caught up. The calls of that
    time are recorded with their path and status, without the messages left out, and the calls
    after it are recorded whole: the HPACK state never went missing."""
    import asyncio
    import socket

    from cri_proxy.model import link
    from cri_proxy.model.options import RecordConfig
    from cri_proxy.model.session import SessionInfo
    from cri_proxy.proxy.recorder_out import Outbox
    from cri_proxy.recorder.setup import make_recorder
    from cri_proxy.recorder.loop import Worker

    path = tmp_path / "calls.db"
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    ours, theirs = socket.socketpair()
    out, into = socket.socketpair()
    loop = asyncio.new_event_loop()
    worker = Worker(ours, recorder)
    box = Outbox(2000, lambda: loop, lambda why: None)
    wire, reader = Wire(), link.Reader()

    def chunk(from_client: bool, frames: list[Any]) -> None:
        box.chunk(7, from_client, b"".join(bytes(f.serialize()) for f in frames), True)

    def deliver() -> None:
        box.sock = out
        box.flush()
        box.sock = None  # the recorder reads nothing until the next deliver()
        into.setblocking(False)
        try:
            while data := into.recv(1 << 16):
                reader.feed(data, worker.handle)
        except BlockingIOError:
            pass

    def answer(stream_id: int, size: int) -> list[Any]:
        head, tail = wire.answer(stream_id)
        return [head, DataFrame(stream_id, prefixed(b"\x0a" + bytes([size - 2]) + b"r" * (size - 2))), tail]

    secret = "pa55w0rd-while-thinned"
    try:
        box.send(link.open_message(7, 100, 200, "unix:///up.sock"))
        chunk(True, _pull_image(wire, 1, "hunter2"))
        chunk(False, answer(1, 100))
        deliver()
        chunk(True, _pull_image(wire, 3, "s3cr3t"))
        head, tail = wire.answer(3)
        chunk(False, [head, DataFrame(3, prefixed(b"r" * 2000))])  # takes the outbox past 2000, not 2500
        chunk(False, [tail])  # over the limit at a boundary: the server's side is thinned
        chunk(True, _pull_image(wire, 5, secret))  # and the client's: its headers go, its DATA not
        chunk(False, answer(5, 100))
        assert box.gapped == set() and len(box._thin) == 2
        deliver()
        chunk(True, [wire.request(9), DataFrame(9, prefixed(b""), flags=["END_STREAM"])])  # whole again
        chunk(False, answer(9, 50))
        box.send(link.closed_message(7, time.monotonic(), None))
        deliver()
        assert box._thin == {}
        while recorder.stats.recorded < 4:
            assert recorder.pump() is not None
        recorder.close()
    finally:
        for sock in (ours, theirs, out, into):
            sock.close()
        loop.close()
    stored = b"".join(f.read_bytes() for f in [path, path.with_name(path.name + "-wal")] if f.exists())
    assert secret.encode() not in stored
    got = rows(path, "SELECT stream_id, path, outcome, status_code, notes FROM calls ORDER BY stream_id")
    assert [(r[0], r[1].rpartition("/")[2], r[2], r[3]) for r in got] == [
        (1, "PullImage", "completed", 0), (3, "PullImage", "completed", 0), (5, "PullImage", "completed", 0),
        (9, "Version", "completed", 0)]
    thinned = "messages after the recorder fell behind (the relay left them out) are not recorded"
    assert "request " + thinned in got[2][4] and "response " + thinned in got[2][4]
    assert all(thinned not in (got[i][4] or "") for i in (0, 1, 3))  # call 3's reply went before the thinning
    counts = rows(path, "SELECT c.stream_id, m.direction, count(*) FROM calls c JOIN messages m ON m.call_id = c.id "
                        "GROUP BY c.stream_id, m.direction ORDER BY 1, 2")
    assert counts == [(1, "request", 1), (1, "response", 1), (3, "request", 1), (3, "response", 1),
                      (9, "request", 1), (9, "response", 1)]
