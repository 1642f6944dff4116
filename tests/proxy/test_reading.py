"""The identity path (proxy/reading.py): with fault rules and no translation, blocks go on as
the client sent them, read only for the rules, until the proxy takes a call out of the stream;
from there they are re-encoded. Raw HTTP/2 on both sides (tests/helpers/rawh2.py's client,
tests/helpers/h2upstream.py's runtime, which decodes what arrives with the `hpack` reference
decoder).
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.server import RelayServer
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.rawh2 import RawClient, Reply, grpc_message, hello, request_headers
from tests.helpers.translated import VERSION, dribbled

pytestmark = pytest.mark.timeout(60)

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
