"""Translation in the relay (proxy/translate.py): header blocks re-encoded, answers of its own.

Raw HTTP/2 on both sides (tests/helpers/rawh2.py's client, tests/helpers/h2upstream.py's
runtime, which decodes what arrives with the `hpack` reference decoder), then real gRPC
clients through `cri-proxy run` in front of the stand-in runtime in one version only.
"""

from __future__ import annotations

import asyncio
import json
import pathlib

import grpc
import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.server import RelayServer
from cri_proxy.store.readonly import open_readonly
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.lifecycle import lifecycle
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.rawh2 import RawClient, Reply, grpc_message, hello, request_headers
from tests.helpers.translated import VERSION, dribbled, to_v1alpha2

pytestmark = pytest.mark.timeout(60)

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]


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


@pytest.mark.parametrize("size", [1, 7, 64, 4096])
async def test_requests_cut_anywhere_arrive_whole_and_answered_streams_stay_away(
        relayed: tuple[str, H2Upstream], size: int) -> None:
    sock, upstream = relayed
    replies = await asyncio.to_thread(dribbled, sock, size)
    assert [r.grpc_status for r in replies] == ["12" if i % 5 == 0 and i else "0" for i in range(31)]
    served = upstream.requests[1:]
    assert [dict(r.headers)["x-call"] for r in served] == [f"c{i}" * (i % 7 + 1) for i in range(1, 31) if i % 5]
    assert [r.body for r in served] == [grpc_message(b"m%d" % i) for i in range(1, 31) if i % 5]


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


FS_INFO = "/runtime.v1.ImageService/ImageFsInfo"  # an image call whose message is not checked
LOWER = 256  # below the 4096 a client's table starts with; room for an ImageFsInfo call's fields


def lowered_after_warm_calls(sock: str, with_update: bool) -> list[Reply]:
    """Three image calls (the last two with the same block) sent before the client acknowledges
    the runtime socket's SETTINGS_HEADER_TABLE_SIZE of 256, then the acknowledgement and a fourth
    call in one write: its block opens with the size update RFC 7541 §4.2 then requires (as a
    compliant encoder's does), or it is the warm block again without it."""
    encoder, replies = Encoder(), []
    with RawClient(sock, ack_settings=False) as client:
        client.send(hello())
        while not isinstance(frame := client._frame(), SettingsFrame) or "ACK" in frame.flags:
            assert frame is not None
        assert frame.settings[SettingsFrame.HEADER_TABLE_SIZE] == LOWER
        blocks = [client.encode(encoder, request_headers(FS_INFO)) for _ in range(3)]
        assert blocks[1] == blocks[2]
        if with_update:
            client.table_size = LOWER
            blocks.append(client.encode(encoder, request_headers(FS_INFO)))
            assert blocks[-1][0] & 0xE0 == 0x20  # a dynamic table size update first
        else:
            blocks.append(blocks[2])
        for i, block in enumerate(blocks):
            wire = HeadersFrame(2 * i + 1, block, flags=["END_HEADERS"]).serialize() \
                + DataFrame(2 * i + 1, grpc_message(b"m%d" % i), flags=["END_STREAM"]).serialize()
            client.send(SettingsFrame(0, flags=["ACK"]).serialize() + wire if i == 3 else wire)
            replies.append(client.read_reply(2 * i + 1))
    return replies


@pytest.mark.parametrize("with_update", [True, False], ids=["with-the-size-update", "without-it"])
@pytest.mark.parametrize("mode", ["translated", "identity"])
async def test_a_block_kept_before_the_client_acknowledged_a_lower_table_size_is_not_reused(
        sock_dir: pathlib.Path, mode: str, with_update: bool) -> None:
    # The first call is for the image socket, so the relay moves there and follows the client's
    # SETTINGS ACKs until it acknowledges the runtime socket's: the client's encoder must then
    # shrink its table, first thing in its next block. A block kept from before (rewritten, or
    # passed as it is with fault rules only) stands no more for those bytes: the relay decodes
    # them again, and refuses them as the runtime would.
    api = "v1alpha2" if mode == "translated" else "v1"
    runtime = await H2Upstream(sock_dir / "rt.sock", api=api, table_size=LOWER).start()
    image = await H2Upstream(sock_dir / "img.sock", api=api).start()
    policy = TranslationPolicy(to_v1alpha2) if mode == "translated" else TranslationPolicy(
        lambda path: None, faults=FaultBook(parse_rules([{"name": "no-streams", "match": {
            "method": "StreamContainers"}, "action": {"error": {"code": "UNAVAILABLE", "message": "x"}}}], "t")))
    relay = RelayServer(sock_dir / "p.sock", runtime.path, image.path, translation=policy)
    await relay.start()
    try:
        replies = await asyncio.to_thread(lowered_after_warm_calls, str(sock_dir / "p.sock"), with_update)
    finally:
        await relay.stop(0)
        await image.stop()
        await runtime.stop()
    assert [r.grpc_status for r in replies[:3]] == ["0"] * 3
    path = f"/runtime.{api}.ImageService/ImageFsInfo"
    if with_update:
        assert replies[3].grpc_status == "0"
        assert [dict(r.headers)[":path"] for r in image.requests] == [path] * 4
        assert image.requests[3].table_size <= LOWER
    else:
        assert (replies[3].grpc_status, replies[3].goaway) == (None, 9)  # COMPRESSION_ERROR
        assert [dict(r.headers)[":path"] for r in image.requests] == [path] * 3


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
