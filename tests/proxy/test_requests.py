"""The client's side of a connection read for fault rules (proxy/requests.py): a chunk whose
header blocks the translator let pass before goes on whole, unread, only while the client's
HPACK table and the rules are as they were when it was decided.

Raw HTTP/2 from the client (tests/helpers/rawh2.py) to an in-process relay in front of
tests/helpers/h2upstream.py's runtime, which decodes what arrives with the `hpack` reference
decoder and answers every call.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hpack import Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.translate import TranslationPolicy
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.rawh2 import RawClient, grpc_message, hello

pytestmark = pytest.mark.timeout(60)

VERSION = "/runtime.v1.RuntimeService/Version"
PULL = "/runtime.v1.ImageService/PullImage"
UNAVAILABLE = {"error": {"code": "UNAVAILABLE", "message": "injected"}}


def headers(path: str) -> list[Any]:
    """A request's fields, only its `:path` kept in the client's dynamic table (the others are
    static or never indexed): a repeated call's block names that entry by its index."""
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost", True),
            ("content-type", "application/grpc", True), ("te", "trailers", True)]


class Calls:
    """One raw connection: each call's block as sent, or a block sent again byte for byte."""

    def __init__(self, sock: str) -> None:
        self.client = RawClient(sock)
        self.encoder = Encoder()
        self.sid = -1
        self.client.send(hello())

    def call(self, path: str | None = None, block: bytes = b"") -> tuple[str | None, bytes]:
        """The call's grpc-status and the block it was sent with (`block` as it is, or `path`'s)."""
        self.sid += 2
        if path is not None:
            block = self.client.encode(self.encoder, headers(path))
        self.client.send(HeadersFrame(self.sid, block, flags=["END_HEADERS"]).serialize()
                         + DataFrame(self.sid, grpc_message(b"m"), flags=["END_STREAM"]).serialize())
        return self.client.read_reply(self.sid).grpc_status, block


@pytest.fixture
async def book_relay(sock_dir: pathlib.Path) -> AsyncIterator[tuple[FaultBook, RelayServer, H2Upstream, Calls]]:
    upstream = await H2Upstream(sock_dir / "up.sock", api="v1").start()
    book = FaultBook(parse_rules([{"name": "no-pulls", "match": {"method": "PullImage"}, "action": UNAVAILABLE,
                                   "every": 2}], "test"))
    relay = RelayServer(sock_dir / "p.sock", upstream.path, translation=TranslationPolicy(lambda path: None,
                                                                                          faults=book))
    await relay.start()
    calls = await asyncio.to_thread(Calls, str(sock_dir / "p.sock"))
    try:
        yield book, relay, upstream, calls
    finally:
        calls.client.close()
        await relay.stop(0)
        await upstream.stop()


def _passing(relay: RelayServer) -> set[bytes]:
    (conn,) = relay.connections
    translator = conn.route.translator  # type: ignore[attr-defined]
    assert translator is not None
    passing: set[bytes] = translator.passing
    return passing


async def test_a_block_sent_again_after_the_table_moved_is_decoded_again(
        book_relay: tuple[FaultBook, RelayServer, H2Upstream, Calls]) -> None:
    # A repeated Version block names its path as the newest entry of the client's table; once
    # a PullImage call adds its own path, the same bytes name PullImage, which the rule takes.
    _, relay, upstream, calls = book_relay
    replies = [await asyncio.to_thread(calls.call, VERSION) for _ in range(3)]
    warm = replies[-1][1]
    assert warm == replies[1][1] and warm in _passing(relay)  # the block passes unread
    assert (await asyncio.to_thread(calls.call, PULL))[0] == "0"  # the rule's first match: not due
    assert not _passing(relay)  # that block moved the client's table
    assert (await asyncio.to_thread(calls.call, None, warm))[0] == "14"  # read as PullImage: the rule's 2nd
    assert [r[0] for r in replies] == ["0", "0", "0"]
    assert [dict(r.headers)[":path"] for r in upstream.requests] == [VERSION] * 3 + [PULL]
    assert [r.block for r in upstream.requests[:3]] == [r[1] for r in replies]  # byte for byte


async def test_a_rule_loaded_at_run_time_takes_the_next_call_of_a_passing_block(
        book_relay: tuple[FaultBook, RelayServer, H2Upstream, Calls]) -> None:
    book, relay, upstream, calls = book_relay
    before = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(3)]
    assert _passing(relay)
    book.replace(parse_rules([{"name": "no-version", "match": {"method": "Version"}, "action": UNAVAILABLE}], "t"))
    assert not _passing(relay)
    taken = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(2)]
    book.replace(parse_rules([], "t"))
    after = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(3)]
    assert (before, taken, after) == (["0"] * 3, ["14"] * 2, ["0"] * 3)
    assert [dict(r.headers)[":path"] for r in upstream.requests] == [VERSION] * 6  # the taken two never went on
