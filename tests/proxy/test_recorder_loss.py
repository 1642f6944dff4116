"""A recorder process that dies (kill -9, out of memory) costs what it held, counted; forwarding
goes on, a new recorder takes over the same session, and the loss is in the database."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.calls import read_rows as rows
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess, recorder_pid, wait_for_log

pytestmark = pytest.mark.timeout(90)

STOPPED = "the recorder process stopped"
BACK = "the recorder process is back"
NEW_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]  # else grpc reuses the other channel's connection


async def wait_for_rows(path: pathlib.Path, sql: str, want: list[tuple[object, ...]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not path.exists() or rows(path, sql) != want:
        assert asyncio.get_running_loop().time() < deadline, rows(path, sql) if path.exists() else "no file"
        await asyncio.sleep(0.05)


async def test_a_killed_recorder_is_restarted_and_its_loss_recorded(
        sock_dir: pathlib.Path, runtime: pathlib.Path, cli_cmd: list[str]) -> None:
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as kubelet:  # one long-lived connection
            stub = v1_grpc.RuntimeServiceStub(kubelet)
            for _ in range(5):
                await stub.Version(v1.VersionRequest())
            await wait_for_rows(path, "SELECT count(*) FROM calls", [(5,)])
            events = stub.GetContainerEvents(v1.GetEventsRequest())  # open when the recorder dies: lost
            await stub.Version(v1.VersionRequest(version="marks-the-stream-as-open"))
            await wait_for_rows(path, "SELECT count(*) FROM calls", [(6,)])  # all but the stream are written
            first = recorder_pid(proxy)
            os.kill(first, signal.SIGKILL)
            for _ in range(10):  # relayed while no recorder is up: lost, and counted
                await stub.ListContainers(v1.ListContainersRequest())
            await wait_for_log(proxy, BACK)
            assert recorder_pid(proxy) != first
            await stub.ListContainers(v1.ListContainersRequest())  # an old connection: recorded, unparsed
            events.cancel()
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=NEW_CONNECTION) as fresh:
                await v1_grpc.RuntimeServiceStub(fresh).Version(v1.VersionRequest(version="after-restart"))
        assert await proxy.astop() == 0
    log = proxy.log()
    assert STOPPED in log and "forwarding goes on" in log and "Traceback" not in log
    sessions = rows(path, "SELECT id, calls_recorded, calls_lost, loss_episodes, ended_at IS NOT NULL FROM sessions")
    recorded = rows(path, "SELECT count(*) FROM calls")[0][0]
    # 5 + the marker Version before; after the restart the old connection's call (unparsed) and the new one's.
    assert sessions == [(1, recorded, 11, 1, 1)] and recorded == 8
    assert rows(path, "SELECT reason, calls_lost, ended_at IS NOT NULL FROM losses") == [("recorder died", 11, 1)]
    assert rows(path, "SELECT path, outcome FROM calls WHERE path = '' OR outcome = 'unparsed'") == [("", "unparsed")]
    [(notes,)] = rows(path, "SELECT notes FROM calls WHERE outcome = 'unparsed'")
    assert "never reached the recorder (it was restarted while the connection was open)" in str(notes)
    assert rows(path, "SELECT count(*) FROM calls WHERE path LIKE '%/Version' AND outcome = 'completed'") == [(7,)]
    stats = subprocess.run([*cli_cmd, "stats", "--db", str(path), "--format", "json"], capture_output=True,
                           text=True, timeout=30)
    assert stats.returncode == 0, stats.stderr
    assert "recorder died" in stats.stdout and "11 calls were seen but NOT recorded" in stats.stderr
    json.loads(stats.stdout)


async def test_a_dead_recorder_process_never_fails_cri_calls(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            stub = v1_grpc.RuntimeServiceStub(channel)
            await stub.Version(v1.VersionRequest())
            os.kill(recorder_pid(proxy), signal.SIGKILL)
            for _ in range(50):
                await stub.ListContainers(v1.ListContainersRequest())
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:  # a new connection too
            assert (await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())).runtime_name
        assert await proxy.astop() == 0
    assert STOPPED in proxy.log()
    assert "forwarding goes on" in proxy.log()


async def test_require_recording_refuses_connections_until_a_recorder_is_back(
        sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path), "--require-recording") as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=NEW_CONNECTION) as channel:
            await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())
        await wait_for_rows(path, "SELECT count(*) FROM calls", [(1,)])
        os.kill(recorder_pid(proxy), signal.SIGKILL)
        await wait_for_log(proxy, STOPPED)  # a new recorder starts half a second later at the soonest
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=NEW_CONNECTION) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await wait_for_log(proxy, BACK)
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=NEW_CONNECTION) as channel:
            assert (await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest(), timeout=5)).runtime_name
        assert await proxy.astop() == 0
    assert rows(path, "SELECT count(*), sum(outcome = 'completed') FROM calls") == [(2, 2)]  # none refused
    assert rows(path, "SELECT calls_lost, loss_episodes FROM sessions") == [(0, 1)]
