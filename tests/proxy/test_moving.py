"""A connection moved to another socket by its first call (proxy/moving.py): every byte the
client sent reaches the new server, whenever the move happens among the client's writes."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import random

import pytest

from cri_proxy.proxy.server import RelayServer
from tests.helpers.backend import start_echo
from tests.helpers.rawh2 import grpc_message, split_call

pytestmark = pytest.mark.timeout(30)

IMAGE_CALL = "/runtime.v1.ImageService/ListImages"


def _split_calls(sock_path: str, count: int, seed: int, ack_settings: bool) -> list[str]:
    """`count` image calls, each on a new connection, with the DATA written 0.1-0.2 ms after
    the HEADERS: the moment the connection is moving to the image socket. `ack_settings`:
    the client acknowledges the servers' SETTINGS (after its request, so the first server's
    may reach the proxy after the move)."""
    rng = random.Random(seed)
    wrong = []
    for i in range(count):
        try:
            reply = split_call(IMAGE_CALL, sock_path, rng.uniform(1e-4, 2e-4), 3.0, ack_settings)
        except TimeoutError:
            wrong.append(f"call {i}: no answer within 3 s")
            continue
        except ConnectionError as exc:
            wrong.append(f"call {i}: {exc!r}")
            continue
        if reply.grpc_status != "0" or reply.data != grpc_message(b"image:hi"):
            wrong.append(f"call {i}: {reply}")
    return wrong


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ack_settings", [False, True])
async def test_a_moved_connection_delivers_every_byte_the_client_sent(sock_dir: pathlib.Path,
                                                                      ack_settings: bool) -> None:
    # Issue 11.1: bytes read while the connection moved could park where nothing sent them.
    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", sock_dir / "image.sock")
    await relay.start()
    try:
        wrong = await asyncio.gather(*(asyncio.to_thread(_split_calls, str(sock_dir / "p.sock"), 600, seed, ack_settings)
                                       for seed in range(4)))
    finally:
        await relay.stop(0)
        await runtime.stop(0)
        await image.stop(0)
    wrong_calls = [w for worker in wrong for w in worker]
    kinds = collections.Counter(w.split(": ", 1)[1][:60] for w in wrong_calls)
    assert not wrong_calls, f"{len(wrong_calls)} of 2400 calls went wrong: {kinds.most_common(4)}"
