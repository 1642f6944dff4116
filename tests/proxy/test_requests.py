"""The client's side of a connection read for fault rules or translated (proxy/requests.py): a
chunk whose header blocks the translator settled before goes on unread (as it is, or each
block swapped for what it was rewritten to), only while the HPACK tables, their size limits
and the rules are as they were when it was decided.

Raw HTTP/2 from the client (tests/helpers/rawh2.py) to an in-process relay in front of
tests/helpers/h2upstream.py's runtime, which decodes what arrives with the `hpack` reference
decoder and answers every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.proxy.server import RelayServer
from cri_proxy.proxy.translate import TranslationPolicy
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.rawh2 import RawClient, grpc_message, hello
from tests.helpers.translated import to_v1alpha2

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

    def call(self, path: str | None = None, block: bytes = b"", extra: tuple[Any, ...] = ()) -> tuple[str | None, bytes]:
        """The call's grpc-status and the block it was sent with (`block` as it is, or `path`'s
        with the `extra` fields)."""
        self.sid += 2
        if path is not None:
            block = self.client.encode(self.encoder, headers(path) + list(extra))
        self.client.send(HeadersFrame(self.sid, block, flags=["END_HEADERS"]).serialize()
                         + DataFrame(self.sid, grpc_message(b"m"), flags=["END_STREAM"]).serialize())
        return self.client.read_reply(self.sid).grpc_status, block

    def split(self, block: bytes, at: int) -> list[str | None]:
        """Two calls sent with `block` each, their bytes written in two pieces cut at `at`."""
        wire = b""
        for _ in range(2):
            self.sid += 2
            wire += (HeadersFrame(self.sid, block, flags=["END_HEADERS"]).serialize()
                     + DataFrame(self.sid, grpc_message(b"m"), flags=["END_STREAM"]).serialize())
        self.client.send(wire[:at])
        self.client.send(wire[at:])
        return [self.client.read_reply(sid).grpc_status for sid in (self.sid - 2, self.sid)]


Served = tuple[FaultBook, RelayServer, H2Upstream, Calls]


@contextlib.asynccontextmanager
async def serving(sock_dir: pathlib.Path, upstream: H2Upstream, book: FaultBook,
                  policy: TranslationPolicy) -> AsyncIterator[Served]:
    """The rules, an in-process relay in front of `upstream`, the runtime, one raw connection."""
    await upstream.start()
    relay = RelayServer(sock_dir / "p.sock", upstream.path, translation=policy)
    await relay.start()
    calls = await asyncio.to_thread(Calls, str(sock_dir / "p.sock"))
    try:
        yield book, relay, upstream, calls
    finally:
        calls.client.close()
        await relay.stop(0)
        await upstream.stop()


@pytest.fixture
async def book_relay(sock_dir: pathlib.Path) -> AsyncIterator[Served]:
    book = FaultBook(parse_rules([{"name": "no-pulls", "match": {"method": "PullImage"}, "action": UNAVAILABLE,
                                   "every": 2}], "test"))
    upstream = H2Upstream(sock_dir / "up.sock", api="v1")
    async with serving(sock_dir, upstream, book, TranslationPolicy(lambda path: None, faults=book)) as served:
        yield served


def _passing(relay: RelayServer) -> set[bytes]:
    """The blocks the request relay passes itself, unread (those kept with no call left to decide)."""
    (conn,) = relay.connections
    translator = conn.route.translator  # type: ignore[attr-defined]
    assert translator is not None
    kept: dict[bytes, tuple[bytes, Any]] = translator.rewritten
    assert all(block is fragment for fragment, (block, _) in kept.items())  # each kept as itself
    return {fragment for fragment, (_, call) in kept.items() if call is None}


async def test_a_block_sent_again_after_the_table_moved_is_decoded_again(
        book_relay: Served) -> None:
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
        book_relay: Served) -> None:
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


async def test_a_block_passed_as_sent_before_the_proxy_took_a_call_is_re_encoded_after(
        book_relay: Served) -> None:
    # The rule's second PullImage call is taken, its block naming the client's table without
    # moving it: the runtime's table stops following the client's there, so a Version block that
    # passed as it was sent before is re-encoded from then on, like every other block.
    _, relay, upstream, calls = book_relay
    sent = [await asyncio.to_thread(calls.call, PULL)]  # the rule's first match: not due
    sent += [await asyncio.to_thread(calls.call, VERSION) for _ in range(2)]
    warm = sent[-1][1]
    assert warm in _passing(relay)
    assert (await asyncio.to_thread(calls.call, PULL))[0] == "14"  # the block names the table's entry
    sent += [await asyncio.to_thread(calls.call, None, warm) for _ in range(2)]
    sent.append(await asyncio.to_thread(calls.call, VERSION, b"", (("x-new", "value", True),)))
    sent += [await asyncio.to_thread(calls.call, None, warm) for _ in range(2)]
    assert [s[0] for s in sent] == ["0"] * 8
    assert [r.block for r in upstream.requests[:3]] == [s[1] for s in sent[:3]]  # as sent, until the answer
    assert warm not in {r.block for r in upstream.requests[3:]}  # re-encoded from there
    mirror = Decoder()
    meant = [[(k.decode(), v.decode()) for k, v in mirror.decode(s[1], raw=True)] for s in sent]
    assert [r.headers for r in upstream.requests] == meant


# Translated connections: blocks rewritten once, then swapped in place ---------------------
@pytest.fixture
def resize() -> tuple[int, int] | None:
    return None


@pytest.fixture
async def xlat(sock_dir: pathlib.Path, resize: tuple[int, int] | None) -> AsyncIterator[Served]:
    """A v1 client's connection translated for a v1alpha2 runtime, with fault rules (none yet)."""
    book = FaultBook(parse_rules([], "test"))
    upstream = H2Upstream(sock_dir / "up.sock", resize=resize)
    async with serving(sock_dir, upstream, book, TranslationPolicy(to_v1alpha2, faults=book)) as served:
        yield served


def _rewritten(relay: RelayServer) -> dict[bytes, bytes]:
    """The blocks the request relay swaps in itself, by what they become (those kept with no
    call left to decide)."""
    (conn,) = relay.connections
    kept: dict[bytes, tuple[bytes, Any]] = conn.route.translator.rewritten  # type: ignore[attr-defined]
    return {fragment: block for fragment, (block, call) in kept.items() if call is None}


def served_as_sent(upstream: H2Upstream, sent: list[bytes]) -> None:
    """Each request reached the runtime as the client's blocks mean with the client's table as
    it was then (a reference decoder following them), the path in the runtime's version."""
    mirror, expected = Decoder(), []
    for block in sent:
        fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in mirror.decode(block, raw=True)]
        expected.append([(n, v.replace("/runtime.v1.", "/runtime.v1alpha2.") if n == ":path" else v)
                         for n, v in fields])
    assert [r.headers for r in upstream.requests] == expected


async def test_a_rewritten_block_sent_again_after_the_clients_table_moved_is_decoded_again(
        xlat: Served) -> None:
    _, relay, upstream, calls = xlat
    replies = [await asyncio.to_thread(calls.call, VERSION) for _ in range(4)]
    warm = replies[-1][1]
    assert warm == replies[1][1] and warm in _rewritten(relay)
    assert len({r.block for r in upstream.requests[1:]}) == 1  # swapped in: the bytes the encoder made
    pull = await asyncio.to_thread(calls.call, PULL)  # a new entry in the client's table (and the runtime's)
    assert not _rewritten(relay)
    again = await asyncio.to_thread(calls.call, None, warm)  # the same bytes now name PullImage
    assert [r[0] for r in replies + [pull, again]] == ["0"] * 6
    served_as_sent(upstream, [r[1] for r in replies + [pull, again]])
    assert dict(upstream.requests[-1].headers)[":path"] == "/runtime.v1alpha2.ImageService/PullImage"


async def test_rewritten_blocks_stay_right_when_the_clients_table_evicts(
        xlat: Served) -> None:
    # A field nearly as large as the table evicts the path the warm block names by index.
    _, relay, upstream, calls = xlat
    sent = [await asyncio.to_thread(calls.call, VERSION) for _ in range(3)]
    assert sent[-1][1] in _rewritten(relay)
    sent.append(await asyncio.to_thread(calls.call, VERSION, b"", (("x-fill", "f" * 4000),)))
    sent.append(await asyncio.to_thread(calls.call, None, sent[1][1]))  # index 62: now x-fill
    sent += [await asyncio.to_thread(calls.call, PULL) for _ in range(3)]
    sent.append(await asyncio.to_thread(calls.call, None, sent[1][1]))  # index 62: now PullImage's path
    assert [r[0] for r in sent] == ["0"] * len(sent)
    served_as_sent(upstream, [r[1] for r in sent])
    assert all(r.table_size <= 4096 for r in upstream.requests)


@pytest.mark.parametrize("resize", [(4, 0), (4, 64)])
async def test_a_runtime_lowering_its_header_table_ends_the_reuse(
        xlat: Served, resize: tuple[int, int]) -> None:
    # With the fourth call's answer the runtime sends SETTINGS_HEADER_TABLE_SIZE: the next block
    # towards it opens with the size update, and none is swapped in from before. The client goes
    # on sending the same bytes (its own table is not the runtime's limit's to shrink: the relay's
    # decoder takes them), so only the runtime's side can tell the relay to stop reusing them.
    _, relay, upstream, calls = xlat
    sent = [await asyncio.to_thread(calls.call, VERSION) for _ in range(3)]
    assert _rewritten(relay)
    sent.append(await asyncio.to_thread(calls.call, None, sent[-1][1]))
    sent += [await asyncio.to_thread(calls.call, None, sent[-1][1]) for _ in range(3)]
    assert [r[0] for r in sent] == ["0"] * 7
    served_as_sent(upstream, [r[1] for r in sent])
    assert upstream.requests[3].block == upstream.requests[2].block  # still swapped in
    after = upstream.requests[4]
    assert after.block[0] & 0xE0 == 0x20 and after.block[0] & 0x1F <= resize[1]  # the size update first
    assert all(r.table_size <= resize[1] for r in upstream.requests[4:])


async def test_rewritten_blocks_in_chunks_cut_at_every_byte(
        xlat: Served) -> None:
    _, relay, upstream, calls = xlat
    sent = [await asyncio.to_thread(calls.call, VERSION) for _ in range(3)]
    warm = sent[-1][1]
    assert warm in _rewritten(relay)
    size = 2 * (9 + len(warm) + 9 + len(grpc_message(b"m")))
    statuses = [await asyncio.to_thread(calls.split, warm, at) for at in range(1, size)]
    assert statuses == [["0", "0"]] * (size - 1)
    served_as_sent(upstream, [r[1] for r in sent] + [warm] * 2 * (size - 1))
    assert [r.stream_id for r in upstream.requests] == list(range(1, 2 * len(upstream.requests), 2))
    assert {r.body for r in upstream.requests} == {grpc_message(b"m")}


async def test_rules_loaded_at_run_time_take_the_calls_of_rewritten_blocks(
        xlat: Served) -> None:
    book, relay, upstream, calls = xlat
    no_pulls = [{"name": "no-pulls", "match": {"method": "PullImage"}, "action": UNAVAILABLE}]
    book.replace(parse_rules(no_pulls, "t"))  # matches none of these calls: the blocks are still swapped in
    before = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(3)]
    assert _rewritten(relay)
    book.replace(parse_rules([{"name": "no-version", "match": {"method": "Version"}, "action": UNAVAILABLE}], "t"))
    assert not _rewritten(relay)
    taken = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(2)]
    assert not _rewritten(relay)
    book.replace(parse_rules(no_pulls, "t"))
    after = [(await asyncio.to_thread(calls.call, VERSION))[0] for _ in range(3)]
    assert _rewritten(relay)
    assert (before, taken, after) == (["0"] * 3, ["14"] * 2, ["0"] * 3)
    assert [dict(r.headers)[":path"] for r in upstream.requests] == ["/runtime.v1alpha2.RuntimeService/Version"] * 6


async def test_a_kept_block_whose_call_a_rule_could_take_is_decided_at_every_call(
        xlat: Served) -> None:
    # The warm block is kept with its call: sent again as it became, but never swapped in by the
    # relay alone, so the rule counts every call and takes each second one.
    book, relay, upstream, calls = xlat
    book.replace(parse_rules([{"name": "every-2nd", "match": {"method": "Version"}, "action": UNAVAILABLE,
                               "every": 2}], "t"))
    sent = [await asyncio.to_thread(calls.call, VERSION) for _ in range(6)]
    assert [s[0] for s in sent] == ["0", "14"] * 3
    (conn,) = relay.connections
    assert sent[-1][1] in conn.route.translator.rewritten and not _rewritten(relay)  # type: ignore[attr-defined]
    assert [dict(r.headers)[":path"] for r in upstream.requests] == ["/runtime.v1alpha2.RuntimeService/Version"] * 3
    served_as_sent(upstream, [s[1] for s in sent[::2]])
