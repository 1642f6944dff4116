"""cri_proxy/replay/issue.py: one recorded request sent as raw bytes, unary or server-streaming,
against a real gRPC server on a unix socket."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest

from cri_proxy.replay.issue import OK, stream, unary
from tests.helpers.backend import start_echo

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def echo(sock_dir: pathlib.Path) -> AsyncIterator[grpc.aio.Channel]:
    server, _ = await start_echo(f"unix://{sock_dir}/echo.sock")
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/echo.sock") as channel:
            yield channel
    finally:
        await server.stop(0)


async def test_unary_answer_and_error(echo: grpc.aio.Channel) -> None:
    answer = await unary(echo, "/test.Echo/Unary", b"ping", timeout_s=5)
    assert (answer.code, answer.message, answer.responses) == (OK, "", [b"ping"])
    assert len(answer.offsets_s) == 1 and answer.duration_s >= answer.offsets_s[0] > 0
    failed = await unary(echo, "/test.Echo/Fail", b"ABORTED:not now", timeout_s=5)
    assert (failed.code, failed.message, failed.responses) == (grpc.StatusCode.ABORTED.value[0], "not now", [])


async def test_a_deadline_is_an_answer_too(echo: grpc.aio.Channel) -> None:
    answer = await unary(echo, "/test.Echo/Hang", b"", timeout_s=0.2)
    assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]


async def test_a_stream_read_to_its_end(echo: grpc.aio.Channel) -> None:
    answer = await stream(echo, "/test.Echo/ServerStream", b"3", window_s=5)
    assert answer.responses == [b"message 0", b"message 1", b"message 2"]
    assert (answer.code, answer.cut) == (OK, False)
    assert answer.offsets_s == sorted(answer.offsets_s)


async def test_a_stream_longer_than_its_window_is_cut(echo: grpc.aio.Channel) -> None:
    answer = await stream(echo, "/test.Echo/SlowStream", b"1000", window_s=0.3)
    assert answer.cut and 0 < len(answer.responses) < 1000
    assert answer.responses[0] == b"tick 0" and answer.duration_s >= 0.3
