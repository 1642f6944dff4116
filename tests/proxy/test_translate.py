"""Translation in the relay (proxy/translate.py): header blocks re-encoded, answers of its own.

Raw HTTP/2 on both sides (tests/helpers/rawh2.py's client, tests/helpers/h2upstream.py's
runtime, which decodes what arrives with the `hpack` reference decoder), then real gRPC
clients through `cri-proxy run` in front of the stand-in runtime in one version only.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.model.cri import parse_path
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.translate import TranslationPolicy
from cri_proxy.store.readonly import open_readonly
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.lifecycle import lifecycle
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.rawh2 import RawClient, Reply, grpc_message, hello, request_headers

pytestmark = pytest.mark.timeout(60)

VERSION = "/runtime.v1.RuntimeService/Version"
CHANNEL = [("grpc.use_local_subchannel_pool", 1)]


def to_v1alpha2(path: str) -> str | None:
    return "v1alpha2" if parse_path(path).api == "v1" else None


@pytest.fixture
def upstream_table() -> int | None:
    return None


@pytest.fixture
async def relayed(sock_dir: pathlib.Path, upstream_table: int | None) -> AsyncIterator[tuple[str, H2Upstream]]:
    upstream = await H2Upstream(sock_dir / "up.sock", table_size=upstream_table).start()
    relay = RelayServer(sock_dir / "p.sock", upstream.path,
                        translation=TranslationPolicy(to_v1alpha2, cgroup_driver="cgroupfs"))
    await relay.start()
    yield str(sock_dir / "p.sock"), upstream
    await relay.stop(0)
    await upstream.stop()


def calls(sock: str, blocks: list[tuple[str, list[tuple[str, str]]]]) -> list[Reply]:
    """One connection, one call after another, each with its own header fields (a thread's work)."""
    encoder, replies = Encoder(), []
    with RawClient(sock) as client:
        client.send(hello())
        for i, (path, extra) in enumerate(blocks):
            sid = 2 * i + 1
            block = client.encode(encoder, request_headers(path) + extra)  # as a client keeping to §4.2
            client.send(HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize()
                        + DataFrame(sid, grpc_message(b"m%d" % i), flags=["END_STREAM"]).serialize())
            replies.append(client.read_reply(sid))
    return replies


async def test_a_client_table_that_grows_and_evicts_across_many_calls(relayed: tuple[str, H2Upstream]) -> None:
    sock, upstream = relayed
    blocks = [(VERSION, [("x-call", f"value-{i}"), (f"x-key-{i % 40}", "v" * (i % 90)), ("x-same", "constant")])
              for i in range(300)]
    replies = await asyncio.to_thread(calls, sock, blocks)
    assert [r.grpc_status for r in replies] == ["0"] * 300
    assert [dict(r.headers)["x-served-path"] for r in replies] == ["/runtime.v1alpha2.RuntimeService/Version"] * 300
    assert [r.data for r in replies] == [grpc_message(b"m%d" % i) for i in range(300)]
    for request, (path, extra) in zip(upstream.requests, blocks):
        expected = [(n, "/runtime.v1alpha2.RuntimeService/Version" if n == ":path" else v)
                    for n, v in request_headers(path) + extra]
        assert request.headers == expected
    assert max(r.table_size for r in upstream.requests) <= 4096
    assert len(upstream.requests[-1].block) < 80  # a warm connection's fields are indexed on the way out too


@pytest.mark.parametrize("upstream_table", [0, 200])
async def test_a_runtime_that_lowers_its_header_table_gets_blocks_within_it(
        relayed: tuple[str, H2Upstream], upstream_table: int) -> None:
    sock, upstream = relayed
    blocks = [(VERSION, [("x-call", f"value-{i}"), ("x-same", "constant" * 5)]) for i in range(40)]
    replies = await asyncio.to_thread(calls, sock, blocks)
    assert [r.grpc_status for r in replies] == ["0"] * 40
    acked = [r for r in upstream.requests if r.acked]
    assert len(acked) >= 39  # the first call may have been on its way before the runtime's SETTINGS
    first = next(r.block for r in upstream.requests if r.block[0] & 0xE0 == 0x20)
    assert first[0] & 0x1F <= upstream_table  # a dynamic table size update, to at most the runtime's size
    assert all(r.table_size <= upstream_table for r in acked)
    assert [dict(r.headers)["x-call"] for r in upstream.requests] == [f"value-{i}" for i in range(40)]


def continued_call(sock: str, big: str) -> Reply:
    """A request whose header block comes as HEADERS and three CONTINUATION frames."""
    block = Encoder().encode(request_headers(VERSION) + [("x-big", big)])
    pieces = [block[i:i + len(block) // 4 + 1] for i in range(0, len(block), len(block) // 4 + 1)]
    frames = [HeadersFrame(1, pieces[0]).serialize()]
    frames += [ContinuationFrame(1, p).serialize() for p in pieces[1:-1]]
    frames.append(ContinuationFrame(1, pieces[-1], flags=["END_HEADERS"]).serialize())
    with RawClient(sock) as client:
        client.send(hello() + b"".join(frames))
        client.send(DataFrame(1, grpc_message(b"x"), flags=["END_STREAM"]).serialize())
        return client.read_reply(1)


async def test_a_block_split_across_continuation_frames(relayed: tuple[str, H2Upstream]) -> None:
    sock, upstream = relayed
    big = "".join(chr(33 + i % 90) for i in range(40000))
    reply = await asyncio.to_thread(continued_call, sock, big)
    assert reply.grpc_status == "0"
    (request,) = upstream.requests
    assert dict(request.headers)["x-big"] == big
    assert dict(request.headers)[":path"] == "/runtime.v1alpha2.RuntimeService/Version"
    assert request.frames >= 3  # more than one frame can carry: the relay split it again


def answered(sock: str) -> tuple[list[Reply], list[object], list[object]]:
    """Calls, then two the proxy answers itself, then one more; and the client's table around them."""
    encoder, replies = Encoder(), []
    paths = [VERSION, VERSION, "/runtime.v1.RuntimeService/StreamContainers",
             "/runtime.v1.RuntimeService/RuntimeConfig", VERSION]
    with RawClient(sock) as client:
        client.send(hello())
        tables = []
        for i, path in enumerate(paths):
            sid = 2 * i + 1
            if i == 2:
                tables.append(list(client.decoder.header_table.dynamic_entries))
            client.send(HeadersFrame(sid, encoder.encode(request_headers(path)), flags=["END_HEADERS"]).serialize()
                        + DataFrame(sid, grpc_message(b""), flags=["END_STREAM"]).serialize())
            replies.append(client.read_reply(sid))
            if i == 3:
                tables.append(list(client.decoder.header_table.dynamic_entries))
    return replies, tables[0], tables[1]


async def test_the_proxys_own_answers_leave_the_clients_table_alone(relayed: tuple[str, H2Upstream]) -> None:
    sock, upstream = relayed
    replies, before, after = await asyncio.to_thread(answered, sock)
    assert before and before == after
    streamed, config = replies[2], replies[3]
    assert streamed.grpc_status == str(grpc.StatusCode.UNIMPLEMENTED.value[0])
    assert "StreamContainers is not available: the runtime speaks CRI v1alpha2" in dict(streamed.headers)["grpc-message"]
    assert config.grpc_status == "0"
    assert v1.RuntimeConfigResponse.FromString(config.data[5:]).linux.cgroup_driver == v1.CGROUPFS
    assert dict(replies[4].headers)["x-served-path"] == "/runtime.v1alpha2.RuntimeService/Version"
    assert [dict(r.headers)[":path"] for r in upstream.requests] == ["/runtime.v1alpha2.RuntimeService/Version"] * 3


PULL = "/runtime.v1.ImageService/PullImage"


def around_an_answer(sock: str) -> tuple[list[Reply], list[bytes]]:
    """Calls whose fields enter the client's table, one the proxy answers, then calls that
    refer to those entries, and new ones; the blocks as the client sent them."""
    encoder, replies, sent = Encoder(), [], []
    extras = [[("x-call", f"c{i}"), ("x-same", "constant")] for i in range(3)]
    extras += [[("x-call", "pull")]]
    extras += [[("x-call", f"c{i % 3}"), ("x-same", "constant"), ("x-new", f"n{i}")] for i in range(4)]
    with RawClient(sock) as client:
        client.send(hello())
        for i, extra in enumerate(extras):
            sid = 2 * i + 1
            block = client.encode(encoder, request_headers(PULL if i == 3 else VERSION) + extra)
            sent.append(block)
            client.send(HeadersFrame(sid, block, flags=["END_HEADERS"]).serialize()
                        + DataFrame(sid, grpc_message(b"m%d" % i), flags=["END_STREAM"]).serialize())
            replies.append(client.read_reply(sid))
    return replies, sent


async def test_blocks_go_on_as_sent_until_the_proxy_takes_a_call_then_re_encoded(sock_dir: pathlib.Path) -> None:
    # No translation, fault rules only: the runtime's table follows the client's until a call is
    # answered by the proxy (its block never reaches the runtime); from there every block is
    # re-encoded, the first emptying the runtime's table.
    upstream = await H2Upstream(sock_dir / "up.sock", api="v1").start()
    rules = parse_rules({"rules": [{"name": "no-pulls", "match": {"method": "PullImage"},
                                    "action": {"error": {"code": "UNAVAILABLE", "message": "injected"}}}]}, "test")
    relay = RelayServer(sock_dir / "p.sock", upstream.path,
                        translation=TranslationPolicy(lambda path: None, faults=FaultBook(rules)))
    await relay.start()
    try:
        replies, sent = await asyncio.to_thread(around_an_answer, str(sock_dir / "p.sock"))
    finally:
        await relay.stop(0)
        await upstream.stop()
    assert [r.grpc_status for r in replies] == ["0", "0", "0", "14", "0", "0", "0", "0"]
    assert [r.block for r in upstream.requests[:3]] == sent[:3]  # byte for byte, as the client sent them
    assert upstream.requests[3].block[:2] == b"\x20\x3f"  # the runtime's table emptied, then back to 4096
    assert [r.block for r in upstream.requests[3:]] != sent[4:]
    served = [dict(r.headers) for r in upstream.requests]
    assert [h["x-call"] for h in served] == ["c0", "c1", "c2", "c0", "c1", "c2", "c0"]
    assert [h.get("x-new") for h in served[3:]] == ["n0", "n1", "n2", "n3"]
    assert all(h[":path"] == VERSION and h["x-same"] == "constant" for h in served)


# Real clients, through `cri-proxy run` ----------------------------------------------------
async def _direct_and_translated(sock_dir: pathlib.Path, client_api: str, runtime_api: str) -> tuple[list[str], ...]:
    direct_rt = await start_fake_runtime(f"unix://{sock_dir}/d.sock", api=client_api)
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/d.sock", options=CHANNEL) as channel:
            direct = await lifecycle(channel, client_api)
    finally:
        await direct_rt.stop(0)
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api=runtime_api)
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(sock_dir / "c.db")) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                translated = await lifecycle(channel, client_api)
            assert await proxy.astop() == 0, proxy.log()
            log = proxy.log()
    finally:
        await runtime.stop(0)
    assert "starting the bridge" not in log and f"translating CRI {client_api} -> {runtime_api} in the relay" in log
    return direct, translated


@pytest.mark.parametrize(("client_api", "runtime_api"), [("v1", "v1alpha2"), ("v1alpha2", "v1")])
async def test_a_lifecycle_through_translation_ends_as_it_does_direct(
        sock_dir: pathlib.Path, client_api: str, runtime_api: str) -> None:
    direct, translated = await _direct_and_translated(sock_dir, client_api, runtime_api)
    assert translated == direct
    conn = open_readonly(sock_dir / "c.db")
    try:
        rows = conn.execute("SELECT client_api, upstream_api, notes FROM calls").fetchall()
    finally:
        conn.close()
    assert len(rows) >= 20
    assert {(c, u) for c, u, _ in rows} == {(client_api, runtime_api)}
    assert all(f"translated {client_api} -> {runtime_api}" in json.loads(n) for _, _, n in rows)


def dribbled(sock: str, size: int) -> list[Reply]:
    """A first call, then many written at once and cut into writes of `size` bytes: blocks and
    frames split anywhere."""
    encoder, wire = Encoder(), b""
    first = encoder.encode(request_headers(VERSION) + [("x-call", "first")])
    for i in range(1, 31):
        sid, path = 2 * i + 1, VERSION if i % 5 else "/runtime.v1.RuntimeService/StreamContainers"
        block = encoder.encode(request_headers(path) + [("x-call", f"c{i}" * (i % 7 + 1))])
        half = len(block) // 2
        wire += (HeadersFrame(sid, block[:half]).serialize()
                 + ContinuationFrame(sid, block[half:], flags=["END_HEADERS"]).serialize()
                 + DataFrame(sid, grpc_message(b"m%d" % i)).serialize()
                 + DataFrame(sid, b"", flags=["END_STREAM"]).serialize())
    with RawClient(sock) as client:
        client.send(hello() + HeadersFrame(1, first, flags=["END_HEADERS", "END_STREAM"]).serialize())
        replies = [client.read_reply(1)]  # the connection has settled: what follows is relayed in runs
        for i in range(0, len(wire), size):
            client.send(wire[i:i + size])
        return replies + read_all(client, [2 * i + 1 for i in range(1, 31)])


def read_all(client: RawClient, streams: list[int]) -> list[Reply]:
    """The replies of calls answered in any order (each header block decoded as it comes)."""
    replies = {sid: Reply() for sid in streams}
    while not all(r.ended for r in replies.values()):
        frame = client._frame()
        assert frame is not None, "the proxy closed the connection"
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            fields = [(k.decode(), v.decode()) for k, v in client.decoder.decode(frame.data, raw=True)]
            if frame.stream_id in replies:
                replies[frame.stream_id].headers += fields
                replies[frame.stream_id].ended = "END_STREAM" in frame.flags
        elif isinstance(frame, DataFrame) and frame.stream_id in replies:
            replies[frame.stream_id].data += frame.data
    return [replies[sid] for sid in streams]


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
async def test_requests_cut_anywhere_arrive_whole_and_answered_streams_stay_away(
        relayed: tuple[str, H2Upstream], size: int) -> None:
    sock, upstream = relayed
    replies = await asyncio.to_thread(dribbled, sock, size)
    assert [r.grpc_status for r in replies] == ["12" if i % 5 == 0 and i else "0" for i in range(31)]
    served = upstream.requests[1:]
    assert [dict(r.headers)["x-call"] for r in served] == [f"c{i}" * (i % 7 + 1) for i in range(1, 31) if i % 5]
    assert [r.body for r in served] == [grpc_message(b"m%d" % i) for i in range(1, 31) if i % 5]


@pytest.mark.parametrize("size", [1, 7, 4096])
async def test_blocks_cut_anywhere_pass_as_sent_then_re_encoded_after_an_answer(sock_dir: pathlib.Path,
                                                                                  size: int) -> None:
    # No translation, a rule answering StreamContainers: blocks split across frames and chunks go
    # on as sent until the first answer, re-encoded after it, each call served as it was asked.
    upstream = await H2Upstream(sock_dir / "up.sock", api="v1").start()
    rules = parse_rules([{"name": "no-streams", "match": {"method": "StreamContainers"},
                          "action": {"error": {"code": "UNAVAILABLE", "message": "injected"}}}], "test")
    relay = RelayServer(sock_dir / "p.sock", upstream.path,
                        translation=TranslationPolicy(lambda path: None, faults=FaultBook(rules)))
    await relay.start()
    try:
        replies = await asyncio.to_thread(dribbled, str(sock_dir / "p.sock"), size)
    finally:
        await relay.stop(0)
        await upstream.stop()
    assert [r.grpc_status for r in replies] == ["14" if i % 5 == 0 and i else "0" for i in range(31)]
    served = upstream.requests[1:]
    assert [dict(r.headers)["x-call"] for r in served] == [f"c{i}" * (i % 7 + 1) for i in range(1, 31) if i % 5]
    assert [r.body for r in served] == [grpc_message(b"m%d" % i) for i in range(1, 31) if i % 5]
    assert all(dict(r.headers)[":path"] == VERSION for r in upstream.requests)


async def test_repeated_blocks_stay_right_when_either_table_moves(relayed: tuple[str, H2Upstream]) -> None:
    # A warm client repeats a call's block byte for byte; the relay reuses what it made of it only
    # while neither table has changed (here a new field in between changes both).
    sock, upstream = relayed
    same = (VERSION, [("x-same", "constant")])
    blocks = [same] * 20 + [(VERSION, [("x-new", "value")])] + [same] * 20 + [(VERSION, [("x-same", "other")])] * 3
    replies = await asyncio.to_thread(calls, sock, blocks)
    assert [r.grpc_status for r in replies] == ["0"] * len(blocks)
    expected = [[(n, "/runtime.v1alpha2.RuntimeService/Version" if n == ":path" else v)
                 for n, v in request_headers(path) + extra] for path, extra in blocks]
    assert [r.headers for r in upstream.requests] == expected


OTHER_VERSION_RULES = """
rules:
  - {name: other-down, match: {method: Version, api: OTHER}, action: {error: {code: UNAVAILABLE, message: other down}}}
  - {name: other-slow, match: {method: ImageFsInfo, api: OTHER}, action: {delay: 1s}}
"""


@pytest.mark.parametrize(("runtime_api", "first", "other"),
                         [("both", "v1", "v1alpha2"), ("v1alpha2", "v1", "v1alpha2"), ("v1", "v1alpha2", "v1")])
async def test_fault_rules_see_calls_in_the_connections_other_version(
        sock_dir: pathlib.Path, runtime_api: str, first: str, other: str) -> None:
    # A connection is read (and maybe translated) by its first call's version; a call in the
    # other version on it goes on untranslated, and the fault rules are asked about it too.
    from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
    from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc

    pb = {"v1": (v1, v1_grpc), "v1alpha2": (v1alpha2, v1alpha2_grpc)}
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api=runtime_api)
    rules, db = sock_dir / "rules.yaml", sock_dir / "c.db"
    rules.write_text(OTHER_VERSION_RULES.replace("OTHER", other))
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--faults", str(rules),
                                "--db", str(db)) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                (mine, mine_grpc), (theirs, theirs_grpc) = pb[first], pb[other]
                rt, other_rt = mine_grpc.RuntimeServiceStub(channel), theirs_grpc.RuntimeServiceStub(channel)
                other_img = theirs_grpc.ImageServiceStub(channel)
                assert (await rt.Version(mine.VersionRequest())).version  # the connection's version: no rule
                with pytest.raises(grpc.aio.AioRpcError) as down:
                    await other_rt.Version(theirs.VersionRequest())
                assert (down.value.code(), down.value.details()) == (grpc.StatusCode.UNAVAILABLE, "other down")
                slow = asyncio.ensure_future(other_img.ImageFsInfo(theirs.ImageFsInfoRequest(), timeout=20))
                assert (await rt.Version(mine.VersionRequest())).version  # meanwhile
                assert not slow.done()
                await slow  # answered by the runtime itself, in the version it was asked in
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    conn = open_readonly(db)
    try:
        rows = conn.execute("SELECT path, notes, duration_ms FROM calls ORDER BY id").fetchall()
    finally:
        conn.close()
    noted = [(path, [n for n in json.loads(notes or "[]") if n.startswith("fault: ")], ms) for path, notes, ms in rows]
    assert [(path, faults) for path, faults, _ in noted if faults] == [
        (f"/runtime.{other}.RuntimeService/Version", ["fault: other-down error UNAVAILABLE"]),
        (f"/runtime.{other}.ImageService/ImageFsInfo", ["fault: other-slow delay 1.000s"])]
    # Held for the delay. The recording times a call from when the relay handed its bytes to the
    # recorder, just after it armed the delay's timer: on a loaded machine that can be a few ms
    # later (995 ms was seen), hence the margin.
    assert next(ms for path, faults, ms in noted if faults and "ImageFsInfo" in path) >= 900
