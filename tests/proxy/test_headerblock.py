"""Request header blocks routing holds, and the frames before them: bounded as the runtime
bounds them, and every breach of the framing they depend on ends the connection with one
line and a GOAWAY."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import select
import threading
from collections.abc import AsyncIterator

import psutil
import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.headerblock import MAX_BLOCK, MAX_EARLY_FRAMES
from cri_proxy.proxy.server import RelayServer
from tests.helpers.backend import channel, start_echo, unary
from tests.helpers.rawh2 import RawClient, drain, flood, hello, opening, raw_frame, request_headers

pytestmark = pytest.mark.timeout(60)

RUNTIME_CALL = "/runtime.v1.RuntimeService/Version"
IMAGE_CALL = "/runtime.v1.ImageService/ListImages"


@pytest.fixture
async def split(sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """A relay routing by the first call (image socket apart), in this process."""
    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", sock_dir / "image.sock")
    await relay.start()
    yield sock_dir / "p.sock"
    await relay.stop(0)
    await runtime.stop(0)
    await image.stop(0)


def _flood(path: pathlib.Path, total: int) -> tuple[int | None, int]:
    """HEADERS without END_HEADERS, then CONTINUATIONs until the proxy hangs up or `total` bytes."""
    from hpack import Encoder

    block = Encoder().encode(request_headers(IMAGE_CALL))
    sent = 0
    with RawClient(str(path), timeout=10) as client:
        client.send(hello() + raw_frame(h2.HEADERS, 0, 1, block))
        piece = raw_frame(h2.CONTINUATION, 0, 1, b"\x40\x01a\x01b" * 3276)  # literal a: b, 16 KiB a frame
        while sent < total and not select.select([client.sock], [], [], 0)[0]:
            client.send(piece * 16)  # until the proxy answers: then read what it said
            sent += len(piece) * 16
        return drain(client).goaway, sent


async def _calls_meanwhile(address: str, stop: threading.Event) -> int:
    """Calls on a connection of their own until `stop`; every one must succeed."""
    done = 0
    async with channel(address) as ch:
        while not stop.is_set() or done < 5:
            assert await unary(ch, RUNTIME_CALL)(b"%d" % done, timeout=5) == b"runtime:%d" % done
            done += 1
    return done


async def test_a_continuation_flood_is_cut_off_at_the_bound(split: pathlib.Path) -> None:
    # Issue 11.2: the block was held whole (1.5 GB of RSS); now the connection ends at 16 MiB.
    me = psutil.Process()
    before = me.memory_info().rss
    stop = threading.Event()
    others = asyncio.ensure_future(_calls_meanwhile(f"unix://{split}", stop))
    try:
        results = await asyncio.gather(*(asyncio.to_thread(_flood, split, 8 * MAX_BLOCK) for _ in range(3)))
    finally:
        stop.set()
    assert await others >= 5
    grown = me.memory_info().rss - before
    for goaway, sent in results:
        assert goaway == h2.ERR_PROTOCOL  # as golang.org/x/net/http2, the runtime's HTTP/2, answers it
        assert sent < 4 * MAX_BLOCK
    assert grown < 3 * MAX_BLOCK + (64 << 20), f"RSS grew by {grown >> 20} MiB"


def _bad(kind: str) -> bytes:
    from hpack import Encoder

    block = Encoder().encode(request_headers(RUNTIME_CALL))
    if kind == "stream-0 PADDED":
        return raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_PADDED, 0, b"\x00" + block)
    if kind == "stream-0 PRIORITY":
        return raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_PRIORITY, 0, b"\x00" * 5 + block)
    if kind == "padding past the payload":
        return raw_frame(h2.HEADERS, h2.FLAG_END_HEADERS | h2.FLAG_PADDED, 1, b"\xff" + block)
    if kind == "CONTINUATION first":
        return raw_frame(h2.CONTINUATION, h2.FLAG_END_HEADERS, 1, block)
    if kind == "DATA inside a block":
        return raw_frame(h2.HEADERS, 0, 1, block) + raw_frame(h2.DATA, 0, 1, b"x")
    raise ValueError(kind)


KINDS = ["stream-0 PADDED", "stream-0 PRIORITY", "padding past the payload", "CONTINUATION first",
         "DATA inside a block"]


def _send_bad(path: pathlib.Path, kind: str) -> int | None:
    with RawClient(str(path), timeout=10) as client:
        client.send(hello() + _bad(kind))
        return drain(client).goaway


async def test_every_bad_frame_gives_one_line_and_a_goaway(split: pathlib.Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # Issue 11.10: a HEADERS frame on stream 0 with PADDED or PRIORITY raised a traceback.
    caplog.set_level(logging.WARNING)
    kinds = [KINDS[i % len(KINDS)] for i in range(100)]
    goaways = [await asyncio.to_thread(_send_bad, split, kind) for kind in kinds]
    assert goaways == [h2.ERR_PROTOCOL] * 100
    lines = [r for r in caplog.records if "closing the connection with GOAWAY PROTOCOL_ERROR" in r.getMessage()]
    assert len(lines) == 100
    assert all(r.getMessage().startswith("conn ") for r in lines)
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    async with channel(f"unix://{split}") as ch:  # the relay serves on
        assert await unary(ch, RUNTIME_CALL)(b"ok", timeout=5) == b"runtime:ok"


FLOODS = {"SETTINGS": raw_frame(h2.SETTINGS, 0, 0, b"\x00\x01\x00\x00\x10\x00"),
          "SETTINGS ACK": raw_frame(h2.SETTINGS, h2.FLAG_ACK, 0, b""),
          "PING": raw_frame(h2.PING, 0, 0, b"12345678"),
          "WINDOW_UPDATE": raw_frame(h2.WINDOW_UPDATE, 0, 0, (1).to_bytes(4, "big"))}


@pytest.mark.parametrize("kind", list(FLOODS))
async def test_a_flood_before_the_first_request_is_told_to_calm_down(split: pathlib.Path, kind: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # Issue 11.3: every frame before the first request was kept for a replay (+84 to +218 MB).
    caplog.set_level(logging.WARNING)
    stop = threading.Event()
    others = asyncio.ensure_future(_calls_meanwhile(f"unix://{split}", stop))
    # Far more than the sockets' buffers hold (7.7 MB of SETTINGS): a proxy that closes once it
    # has said GOAWAY stops the flood long before; 200x (768 KB) was once sent whole into the
    # buffers before the close, on a quiet CI run.
    limit = 2000 * MAX_EARLY_FRAMES
    try:
        results = await asyncio.gather(*(asyncio.to_thread(flood, str(split), hello(), FLOODS[kind], limit)
                                         for _ in range(3)))
    finally:
        stop.set()
    assert await others >= 5
    # A SETTINGS ACK is not held for a replay but goes to the upstream at once, and this one
    # (grpc's C core) hangs up on the second ACK it never asked for, without a GOAWAY: then the
    # relay ends the client's connection too, sometimes before it has read 256 of them (seen
    # once in CI, under load). Either way the flood is stopped.
    calm = [goaway == h2.ERR_ENHANCE_YOUR_CALM for goaway, _ in results]
    for goaway, sent in results:
        assert goaway == h2.ERR_ENHANCE_YOUR_CALM or (kind == "SETTINGS ACK" and goaway is None), goaway
        assert sent < limit
    lines = [r.getMessage() for r in caplog.records if "too much before its first request" in r.getMessage()]
    assert sum(calm) <= len(lines) <= 3 and (sum(calm) == 3 or kind == "SETTINGS ACK"), lines
    assert all("GOAWAY ENHANCE_YOUR_CALM" in line for line in lines)


async def test_what_a_client_sends_before_its_first_request_is_still_replayed(split: pathlib.Path) -> None:
    # The bound leaves room for what clients send: a moved connection still gets all of it.
    early = b"".join([FLOODS["PING"]] + [FLOODS["WINDOW_UPDATE"]] * 20 + [FLOODS["SETTINGS"]] * 20)
    head, tail = opening(IMAGE_CALL)
    with RawClient(str(split), timeout=10) as client:
        client.send(head[:len(hello())] + early + head[len(hello()):] + tail)
        reply = await asyncio.to_thread(client.read_reply)
    assert reply.grpc_status == "0" and reply.data.endswith(b"image:hi")
