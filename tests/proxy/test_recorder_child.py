"""Starting and stopping the recorder process: a database it cannot open stops `cri-proxy run`
only with --require-recording, with one line; a stop lets it write everything first."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.baddb import BAD_DATABASES, bad_database
from tests.helpers.calls import read_rows as rows
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess, recorder_pid

pytestmark = pytest.mark.timeout(90)


async def test_the_recorder_process_stops_with_the_proxy(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    """SIGINT and SIGTERM reach the whole process group (a terminal, systemd): the recorder
    waits for the proxy to say stop, so the calls still queued are written, then exits."""
    path = sock_dir / "calls.db"
    proxy = await ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)).astart()
    worker = recorder_pid(proxy)
    async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
        stub = v1_grpc.RuntimeServiceStub(channel)
        await asyncio.gather(*(stub.Version(v1.VersionRequest()) for _ in range(200)))
    os.kill(worker, signal.SIGTERM)  # as systemd's stop would, before the proxy's own
    assert await proxy.astop() == 0
    assert not pathlib.Path(f"/proc/{worker}").exists() or \
        "zombie" in pathlib.Path(f"/proc/{worker}/status").read_text()
    assert rows(path, "SELECT calls_recorded, calls_lost, ended_at IS NOT NULL FROM sessions") == [(200, 0, 1)]


@pytest.mark.parametrize("kind", BAD_DATABASES)
async def test_require_recording_refuses_to_start_on_a_bad_database(
        sock_dir: pathlib.Path, runtime: pathlib.Path, kind: str) -> None:
    with bad_database(sock_dir, kind) as path:
        result = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "cri_proxy", "run", "--listen", f"unix://{sock_dir}/p.sock", "--runtime-endpoint",
            f"unix://{runtime}", "--db", str(path), "--require-recording"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("cri-proxy: error:") and str(path) in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (sock_dir / "p.sock").exists()


def test_require_recording_refuses_an_unusable_database(sock_dir: pathlib.Path) -> None:
    (sock_dir / "rt.sock").touch()
    result = subprocess.run(
        [sys.executable, "-m", "cri_proxy", "run", "--listen", f"unix://{sock_dir}/p.sock", "--runtime-endpoint",
         f"unix://{sock_dir}/rt.sock", "--db", "/proc/nope/calls.db", "--require-recording"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cri-proxy: error:" in result.stderr and "Traceback" not in result.stderr
