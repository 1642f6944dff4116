"""The metrics and spans peers wired in (cri_proxy/recorder/telemetry.py): `cri-proxy run` as a
real process against the stand-in runtime, scraped and traced over real sockets."""

from __future__ import annotations

import asyncio
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.conftest import ROOT
from tests.helpers.otlp import grpc_receiver
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.scrape import get, samples, total

pytestmark = pytest.mark.timeout(90)

PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is absent (Debian's `prometheus` package has it; .ci/run installs it)"
V1 = "runtime.v1.RuntimeService"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
async def runtime(sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    server = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    yield sock_dir / "rt.sock"
    await server.stop(0)


async def metrics_address(proxy: ProxyProcess, listen: str, timeout: float = 20.0) -> str:
    """Where the recorder serves: `listen`, or for port 0 the address its log names."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(r"metrics: serving .* on (\S+)", proxy.log())
        if found:
            return listen if listen.startswith("unix://") else found.group(1)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the recorder never served metrics:\n{proxy.log()}")
        await asyncio.sleep(0.02)


async def scrape_until(address: str, done: int, timeout: float = 20.0) -> str:
    """/metrics once it has counted `done` finished calls (the recorder counts off the relay's path)."""
    deadline = time.monotonic() + timeout
    while True:
        body = (await asyncio.to_thread(get, address, "/metrics"))[1]
        if total(samples(body), "cri_proxy_calls_total") >= done or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def known_calls(listen: pathlib.Path) -> None:
    """5 Version, 2 ContainerStatus of an unknown id (NOT_FOUND)."""
    async with grpc.aio.insecure_channel(f"unix://{listen}") as channel:
        rt = v1_grpc.RuntimeServiceStub(channel)
        for _ in range(5):
            await rt.Version(v1.VersionRequest())
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="no-such-container"))
            assert err.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("record,where", [(False, "unix"), (True, "tcp")], ids=["no-db-unix", "with-db-tcp"])
async def test_the_counters_say_what_the_client_made(sock_dir: pathlib.Path, runtime: pathlib.Path,
                                                     record: bool, where: str) -> None:
    listen = f"unix://{sock_dir}/metrics.sock" if where == "unix" else "127.0.0.1:0"
    extra = ["--metrics-listen", listen, *(["--db", str(sock_dir / "calls.db")] if record else [])]
    async with ProxyProcess(sock_dir / "p.sock", runtime, *extra) as proxy:
        address = await metrics_address(proxy, listen)
        await known_calls(sock_dir / "p.sock")
        found = samples(await scrape_until(address, 7))
        assert total(found, "cri_proxy_calls_total") == 7
        assert total(found, "cri_proxy_calls_total", service=V1, method="Version", code="OK") == 5
        assert total(found, "cri_proxy_calls_total", service=V1, method="ContainerStatus", code="NOT_FOUND") == 2
        assert total(found, "cri_proxy_calls_failed_total") == 2
        assert total(found, "cri_proxy_calls_failed_total", method="ContainerStatus") == 2
        assert total(found, "cri_proxy_call_duration_seconds_count", method="Version") == 5
        assert total(found, "cri_proxy_upstream_up") == 1
        assert await asyncio.to_thread(get, address, "/healthz") == (200, "ok\n")
        assert await asyncio.to_thread(get, address, "/readyz") == (200, "ready\n")
        assert await proxy.astop() == 0
    assert (sock_dir / "calls.db").exists() is record
    if where == "unix":
        assert not (sock_dir / "metrics.sock").exists()  # removed at exit


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
async def test_promtool_accepts_a_scrape_of_the_running_proxy(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    listen = f"unix://{sock_dir}/metrics.sock"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--metrics-listen", listen) as proxy:
        address = await metrics_address(proxy, listen)
        await known_calls(sock_dir / "p.sock")
        body = await scrape_until(address, 7)
        done = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert await proxy.astop() == 0


async def test_a_sampled_traceparent_gets_a_child_span(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    with grpc_receiver("127.0.0.1:0") as received:
        async with ProxyProcess(sock_dir / "p.sock", runtime, "--otlp-endpoint", received.endpoint) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
                rt = v1_grpc.RuntimeServiceStub(channel)
                await rt.Version(v1.VersionRequest())  # no traceparent, ratio 0: no span
                await rt.Version(v1.VersionRequest(), metadata=(("traceparent", f"00-{TRACE_ID}-{'1' * 16}-00"),))
                with pytest.raises(grpc.aio.AioRpcError):
                    await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="ctr-1"),
                                             metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),))
            spans = await asyncio.to_thread(received.wait_for, 1)
            assert await proxy.astop() == 0  # and the recorder sent every span it made before exiting
        spans = received.items
    assert len(spans) == 1, [s.span.name for s in spans]  # the unsampled and the untraced calls made none
    span = spans[0].span
    assert span.name == f"{V1}/ContainerStatus"
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == PARENT_ID
    attrs = spans[0].attributes
    assert attrs["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert attrs["container.id"] == "ctr-1"  # the ids peer's facts
    doc = (ROOT / "examples" / "metrics.md").read_text()
    assert not sorted(n for n in attrs if f"| `{n}` |" not in doc), "span attributes missing in metrics.md"
    assert spans[0].resource["service.name"] == "cri-proxy"


async def readyz_until(address: str, status: int, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(get, address, "/readyz")
        if got[0] == status or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_readyz_follows_the_runtime(sock_dir: pathlib.Path) -> None:
    """503 with the reason while the runtime does not answer the relay's probe; 200 once it does again."""
    path = sock_dir / "rt.sock"
    server = await start_fake_runtime(f"unix://{path}", api="both")
    listen = f"unix://{sock_dir}/metrics.sock"
    try:
        async with ProxyProcess(sock_dir / "p.sock", path, "--metrics-listen", listen) as proxy:
            address = await metrics_address(proxy, listen)
            assert await readyz_until(address, 200) == (200, "ready\n")
            await server.stop(0)
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
                with pytest.raises(grpc.aio.AioRpcError):  # the relay finds the runtime gone, and probes it
                    await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest(), timeout=5)
            status, reason = await readyz_until(address, 503)
            assert status == 503 and reason.startswith("the runtime does not answer: the runtime endpoint"), reason
            server = await start_fake_runtime(f"unix://{path}", api="both")
            assert await readyz_until(address, 200) == (200, "ready\n")  # the prober asks again by itself
            assert await proxy.astop() == 0
    finally:
        await server.stop(0)


async def test_readyz_with_require_recording_follows_the_database(sock_dir: pathlib.Path,
                                                                   runtime: pathlib.Path) -> None:
    """--require-recording: not ready while the writer cannot write (here: another process holds the lock)."""
    path, listen = sock_dir / "calls.db", f"unix://{sock_dir}/metrics.sock"
    args = ("--db", str(path), "--require-recording", "--metrics-listen", listen)
    async with ProxyProcess(sock_dir / "p.sock", runtime, *args) as proxy:
        address = await metrics_address(proxy, listen)
        assert await readyz_until(address, 200) == (200, "ready\n")
        locker = subprocess.Popen([sys.executable, "-c", (
            "import sqlite3,sys\n"
            f"c=sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.readline()\n")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
                await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())  # its batch cannot commit
            status, reason = await readyz_until(address, 503)
            assert status == 503 and reason.startswith("recording is failing and --require-recording is set"), reason
        finally:
            assert locker.stdin is not None
            locker.stdin.close()
            locker.wait()
        assert await readyz_until(address, 200) == (200, "ready\n")  # the writer's retry gets through
        assert await proxy.astop() == 0
