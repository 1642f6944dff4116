"""cri_proxy/proxy/listen_socket.py, through a real proxy process: a stale socket file is
replaced, a live one refused with one line, and the listen socket gets its mode and group."""

from __future__ import annotations

import os
import pathlib
import socket
import stat
import subprocess

import pytest

from tests.helpers.backend import channel, unary
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(60)


async def test_stale_socket_is_replaced(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_dir / "p.sock"))
    stale.close()  # the file stays, nobody listens: what a crashed proxy leaves
    proxy = await ProxyProcess(sock_dir / "p.sock", backend).astart()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            assert await unary(ch, "/test.Echo/Unary")(b"hi") == b"hi"
    finally:
        assert await proxy.astop() == 0
    assert "replaced the stale socket file" in proxy.log()
    assert not (sock_dir / "p.sock").exists()


def test_live_socket_is_refused(sock_dir: pathlib.Path, cli_cmd: list[str]) -> None:
    upstream = socket.socket(socket.AF_UNIX)
    upstream.bind(str(sock_dir / "up.sock"))
    upstream.listen()
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(sock_dir / "p.sock"))
    live.listen()
    try:
        result = subprocess.run([*cli_cmd, "run", "--listen", f"unix://{sock_dir}/p.sock", "--runtime-endpoint",
                                 f"unix://{sock_dir}/up.sock"], capture_output=True, text=True, timeout=30)
    finally:
        live.close()
        upstream.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"cri-proxy: error: listen socket {sock_dir}/p.sock is live: another cri-proxy (or another server) "
        "is serving it; stop that one first")


async def test_socket_mode_and_group(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    gid = os.getgid()
    async with ProxyProcess(sock_dir / "p.sock", backend, "--socket-mode", "0600", "--socket-group", str(gid)):
        info = (sock_dir / "p.sock").stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_gid == gid
    async with ProxyProcess(sock_dir / "q.sock", backend) as proxy:
        assert stat.S_IMODE((sock_dir / "q.sock").stat().st_mode) == 0o660
        # The socket answers as soon as it listens; the line saying so is logged just after.
        await proxy.await_log(f"listening on unix://{sock_dir}/q.sock (mode 0660), forwarding to unix://{backend}")
