"""Fixtures shared by the relay's tests."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from cri_proxy.proxy.server import RelayServer
from tests.helpers.backend import start_echo


@pytest.fixture(params=["one-socket", "image-apart"])
async def relay_path(request: pytest.FixtureRequest, sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """A relay in front of echo backends, with the image service on the runtime's socket or
    on its own (the two routing strategies); yields the relay's socket."""
    runtime, _ = await start_echo(f"unix://{sock_dir}/runtime.sock", "runtime")
    image, _ = await start_echo(f"unix://{sock_dir}/image.sock", "image")
    apart = sock_dir / "image.sock" if request.param == "image-apart" else None
    relay = RelayServer(sock_dir / "p.sock", sock_dir / "runtime.sock", apart)
    await relay.start()
    yield sock_dir / "p.sock"
    await relay.stop(0)
    await runtime.stop(0)
    await image.stop(0)


@pytest.fixture
async def backend(sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    """An echo backend on up.sock, for a proxy process to forward to."""
    server, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    yield sock_dir / "up.sock"
    await server.stop(0)
