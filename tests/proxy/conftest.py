"""Fixtures shared by the relay's tests."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from cri_proxy.proxy.policy import TranslationPolicy
from cri_proxy.proxy.server import RelayServer
from tests.helpers.backend import start_echo
from tests.helpers.h2upstream import H2Upstream
from tests.helpers.translated import to_v1alpha2


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


@pytest.fixture
def upstream_table() -> int | None:
    return None


@pytest.fixture
async def relayed(sock_dir: pathlib.Path, upstream_table: int | None) -> AsyncIterator[tuple[str, H2Upstream]]:
    """A relay translating v1 calls for a raw v1alpha2 runtime (tests/helpers/h2upstream.py): its socket and the runtime."""
    upstream = await H2Upstream(sock_dir / "up.sock", table_size=upstream_table).start()
    relay = RelayServer(sock_dir / "p.sock", upstream.path,
                        translation=TranslationPolicy(to_v1alpha2, cgroup_driver="cgroupfs"))
    await relay.start()
    yield str(sock_dir / "p.sock"), upstream
    await relay.stop(0)
    await upstream.stop()
