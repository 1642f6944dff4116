"""`cri-proxy health` on a live recording: a call the runtime holds open shows, with its age,
from the running proxy's metrics endpoint; a stopped recording has no open calls to show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.query.health_live import parse, scrape
from tests.helpers.calls import wait_for
from tests.helpers.cli import run_cli
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.recordings import start_container

pytestmark = pytest.mark.timeout(60)


def recorded(db: pathlib.Path) -> int:
    result = run_cli("query", "--db", str(db), "--format", "json", "SELECT COUNT(*) AS n FROM calls")
    return int(json.loads(result.stdout)[0]["n"]) if result.returncode == 0 else 0


def in_flight(listen: str) -> dict[str, float]:
    try:
        return parse(scrape(listen))[0]
    except OSError:
        return {}


async def test_a_call_held_open_shows_with_its_age(sock_dir: pathlib.Path) -> None:
    metrics = f"unix://{sock_dir}/metrics.sock"
    db = sock_dir / "rec.db"
    server = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    try:
        async with ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock", "--db", str(db),
                                "--metrics-listen", metrics) as proxy:  # fmt: skip
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
                rt = v1_grpc.RuntimeServiceStub(channel)
                _, ctr = await start_container(rt, "web", "u1", "app")
                await asyncio.to_thread(wait_for, lambda: recorded(db) > 0)  # the live session's row is written
                held = asyncio.ensure_future(rt.ExecSync(v1.ExecSyncRequest(
                    container_id=ctr, cmd=["sleep", "60"], timeout=90)))  # fmt: skip
                await asyncio.to_thread(wait_for, lambda: in_flight(metrics).get("ExecSync") == 1)
                result = await asyncio.to_thread(run_cli, "health", "--db", str(db), "--format", "json")
                assert not held.done()  # still open while health looked
                held.cancel()  # the kubelet gives up on it: no need to wait out the sleep
                with contextlib.suppress(asyncio.CancelledError):
                    await held
            assert result.returncode in (0, 1), result.stderr
            (found,) = [f for f in json.loads(result.stdout)["findings"] if f["kind"] == "open_calls"]
            assert found["summary"].startswith("1 calls open now (ExecSync ×1), the oldest for ")
            assert found["evidence"].startswith(f"curl -s --unix-socket {sock_dir}/metrics.sock http://localhost/metrics")
            assert await proxy.astop() == 0
    finally:
        await server.stop(0)
    stopped = json.loads(run_cli("health", "--db", str(db), "--format", "json").stdout)
    assert [f for f in stopped["findings"] if f["kind"] == "open_calls"] == []
