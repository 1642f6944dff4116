"""The read commands against `cri-proxy run --db` while it relays a kubelet's calls to the
fake runtime: tail shows each call as it happens, query and stats read the live file, and
the proxy's own recording is never disturbed by them."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import time

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.cli import Tail, run_cli
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(90)


async def wait_recorded(path: pathlib.Path, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(run_cli, "query", "--db", str(path), "--format", "csv",
                                         "SELECT COUNT(*) FROM calls")  # fmt: skip
        if result.returncode == 0 and int(result.stdout.splitlines()[1]) >= n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} calls not recorded in time: {result}")
        await asyncio.sleep(0.1)


async def test_tail_query_and_stats_follow_the_running_proxy(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    proxy = await ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)).astart()
    tail = None
    try:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
            await rt.Version(v1.VersionRequest())
            await wait_recorded(path, 1)
            tail = Tail("--db", str(path), "-n", "1")
            (first,) = await asyncio.to_thread(tail.take, 1)
            assert "v1.RuntimeService/Version" in first

            config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="web-0", namespace="shop", uid="u1"))
            await img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image="docker.io/library/redis:7"),
                                                    sandbox_config=config))  # as the kubelet sends it
            pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
            created = await rt.CreateContainer(v1.CreateContainerRequest(
                pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config,
                config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="redis"),
                                          image=v1.ImageSpec(image="docker.io/library/redis:7"))))  # fmt: skip
            await rt.StartContainer(v1.StartContainerRequest(container_id=created.container_id))
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await rt.ContainerStatus(v1.ContainerStatusRequest(container_id="nope"))
            lines = await asyncio.to_thread(tail.take, 5)

        methods = [line.split()[3] for line in lines]
        assert methods == ["v1.ImageService/PullImage", "v1.RuntimeService/RunPodSandbox",
                           "v1.RuntimeService/CreateContainer", "v1.RuntimeService/StartContainer",
                           "v1.RuntimeService/ContainerStatus"]  # fmt: skip
        assert f"pod={pod.pod_sandbox_id[:12]}(shop/web-0)" in lines[1]
        assert f"ctr={created.container_id[:12]}" in lines[2] and f"ctr={created.container_id[:12]}" in lines[3]
        assert lines[4].split()[2] == failed.value.code().name
        assert lines[4].endswith(json.dumps(failed.value.details()))

        startup = run_cli("query", "--db", str(path), "--named", "pod-startup", "--param", "pod_name=web-0",
                          "--param", "pod_namespace=shop", "--format", "json")  # fmt: skip
        assert [r["method"] for r in json.loads(startup.stdout)] == [
            "PullImage", "RunPodSandbox", "CreateContainer", "StartContainer"], startup.stderr  # fmt: skip
        stats = json.loads(run_cli("stats", "--db", str(path), "--format", "json").stdout)
        assert sum(m["calls"] for m in stats["methods"]) == 6
        (session,) = stats["sessions"]
        assert (session["calls_recorded"], session["calls_lost"], session["ended_at"]) == (6, 0, None)
    finally:
        assert await proxy.astop() == 0
        if tail is not None:
            assert tail.stop(signal.SIGTERM) == 0
    assert "Traceback" not in proxy.log()
    ended = run_cli("query", "--db", str(path), "--format", "jsonl", "SELECT ended_at IS NOT NULL AS ended FROM sessions")
    assert json.loads(ended.stdout) == {"ended": 1}
