"""`cri-proxy demo`: the proxy in front of the stand-in runtime, driven like a kubelet would.

Needs no runtime and no root: it starts the stand-in runtime and the relay on sockets in a
private temporary folder, records to a database in the current folder, makes a kubelet-like
round of calls through the proxy (version, status, relists, a pod lifecycle, exec probes,
an error or two), prints one line per call, then what was recorded and queries to try.
"""

from __future__ import annotations

import asyncio
import io
import pathlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.proxy.server import RelayServer
from cri_proxy.store.readonly import Recording
from cri_proxy.query.output import write_table
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.tap import RecordingTap
from cri_proxy.model.session import SessionInfo
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc

Echo = Callable[[str], None]


class Driver:
    """Makes calls through the proxy and prints one line for each, like `cri-proxy tail` will."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.calls = 0
        self.errors = 0

    async def call(self, name: str, fn: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
        started = time.perf_counter()
        try:
            reply = await fn(request)
            # A probe that exits non-zero failed, though its call is OK: say so as `tail` does.
            exit_code = getattr(reply, "exit_code", 0) if isinstance(request, v1.ExecSyncRequest) else 0
            status = f"OK exit={exit_code}" if exit_code else "OK"
        except grpc.aio.AioRpcError as exc:
            reply, status = None, f"{exc.code().name}: {exc.details()}"
            self.errors += 1
        self.calls += 1
        self.echo(f"  {(time.perf_counter() - started) * 1000:7.2f} ms  {name:<34} {status}")
        return reply


async def kubelet_round(channel: grpc.aio.Channel, d: Driver, pods: int = 3, relist_s: float = 0.5) -> None:
    """What a kubelet asks while it starts a few pods, probes them, relists, and tears them down."""
    rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
    await d.call("Version", rt.Version, v1.VersionRequest())
    await d.call("Status", rt.Status, v1.StatusRequest())
    await d.call("ImageFsInfo", img.ImageFsInfo, v1.ImageFsInfoRequest())
    image = v1.ImageSpec(image="docker.io/library/nginx:1.27")
    await d.call("PullImage", img.PullImage, v1.PullImageRequest(image=image))
    started = []
    for n in range(pods):
        meta = v1.PodSandboxMetadata(name=f"web-{n}", namespace="demo", uid=f"d3m0-web-{n}", attempt=0)
        pod_config = v1.PodSandboxConfig(metadata=meta, labels={"app": "web"})
        pod = await d.call("RunPodSandbox", rt.RunPodSandbox, v1.RunPodSandboxRequest(config=pod_config))
        container_config = v1.ContainerConfig(metadata=v1.ContainerMetadata(name="nginx"), image=image,
                                              envs=[v1.KeyValue(key="MODE", value=b"demo")])
        created = await d.call("CreateContainer", rt.CreateContainer, v1.CreateContainerRequest(
            pod_sandbox_id=pod.pod_sandbox_id, config=container_config, sandbox_config=pod_config))
        await d.call("StartContainer", rt.StartContainer, v1.StartContainerRequest(container_id=created.container_id))
        started.append((pod.pod_sandbox_id, created.container_id))
    for _ in range(2):  # PLEG relists every second
        await asyncio.sleep(relist_s)
        await d.call("ListPodSandbox", rt.ListPodSandbox, v1.ListPodSandboxRequest())
        await d.call("ListContainers", rt.ListContainers, v1.ListContainersRequest())
    for _, cid in started:
        await d.call("ContainerStatus", rt.ContainerStatus, v1.ContainerStatusRequest(container_id=cid))
        await d.call("ExecSync (probe)", rt.ExecSync, v1.ExecSyncRequest(container_id=cid, cmd=["echo", "ok"],
                                                                          timeout=5))
    await d.call("ExecSync (failing probe)", rt.ExecSync,
                 v1.ExecSyncRequest(container_id=started[0][1], cmd=["sh", "-c", "exit 3"], timeout=5))
    await d.call("ListContainerStats", rt.ListContainerStats, v1.ListContainerStatsRequest())
    await d.call("ContainerStatus (unknown id)", rt.ContainerStatus, v1.ContainerStatusRequest(container_id="f" * 64))
    for pod_id, cid in started:
        await d.call("StopContainer", rt.StopContainer, v1.StopContainerRequest(container_id=cid, timeout=10))
        await d.call("RemoveContainer", rt.RemoveContainer, v1.RemoveContainerRequest(container_id=cid))
        await d.call("StopPodSandbox", rt.StopPodSandbox, v1.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        await d.call("RemovePodSandbox", rt.RemovePodSandbox, v1.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    old = v1alpha2_grpc.RuntimeServiceStub(channel)
    await d.call("Version (CRI v1alpha2)", old.Version, v1alpha2.VersionRequest())


EXAMPLES = (
    ("what each method cost",
     "SELECT method, count(*) AS calls, round(avg(duration_ms), 2) AS avg_ms FROM calls GROUP BY method"),
    ("what went wrong: errors, failing probes, unfinished calls",
     "SELECT started_at, kind, method, status_name, exit_code, status_message FROM problems"),
    ("every call about one pod, with the gaps between them", "--named pod-startup --param pod_name=web-0 "
     "--param pod_namespace=demo"),
)


async def run_demo(echo: Echo, db: pathlib.Path) -> int:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="cri-proxy-demo-", dir="/tmp"))
    runtime = await start_fake_runtime(f"unix://{folder}/runtime.sock", api="both")
    recorder = Recorder(db, SessionInfo(listen=f"unix://{folder}/proxy.sock",
                                        runtime_endpoint=f"unix://{folder}/runtime.sock",
                                        runtime_api="v1", image_api="v1", config={"demo": True}))
    try:
        recorder.start()
        relay = RelayServer(folder / "proxy.sock", folder / "runtime.sock", tap=RecordingTap(recorder))
        await relay.start()
        echo(f"stand-in runtime on unix://{folder}/runtime.sock; cri-proxy on unix://{folder}/proxy.sock")
        echo("a kubelet-like round of calls through the proxy:")
        driver = Driver(echo)
        try:
            async with grpc.aio.insecure_channel(f"unix://{folder}/proxy.sock") as channel:
                await kubelet_round(channel, driver)
        finally:
            await relay.stop(0)
    finally:
        await asyncio.to_thread(recorder.close)
        await runtime.stop(0)
        shutil.rmtree(folder, ignore_errors=True)
    stats = recorder.stats
    echo(f"\n{driver.calls} calls relayed ({driver.errors} answered with an error, as intended); "
         f"{stats.recorded} recorded to {db} (session {recorder.session_id}), {stats.lost} lost.")
    show_summary(echo, db, recorder.session_id)
    echo("\nTry:")
    for what, query in EXAMPLES:
        quoted = query if query.startswith("--") else f'"{query}"'
        echo(f"  # {what}\n  cri-proxy query --db {db} {quoted}")
    echo("\nThen put it in front of a real runtime:\n"
         "  cri-proxy run --listen unix:///run/cri-proxy/containerd.sock "
         "--runtime-endpoint unix:///run/containerd/containerd.sock --db /var/lib/cri-proxy/calls.db")
    return 0


def show_summary(echo: Echo, db: pathlib.Path, session: int | None) -> None:
    recording = Recording(db)  # reads without leaving -wal/-shm files beside a stopped recording
    try:
        cursor = recording.conn.execute("SELECT method, count(*) AS calls, sum(status_code <> 0) AS errors, "
                              "count(nullif(exit_code, 0)) AS nonzero_exits, "
                              "round(avg(duration_ms), 2) AS avg_ms, sum(response_bytes) AS reply_bytes "
                              "FROM calls WHERE session_id = ? GROUP BY method ORDER BY calls DESC", (session,))
        columns = [c[0] for c in cursor.description]
        out = io.StringIO()
        write_table(out, columns, cursor.fetchall())
    finally:
        recording.close()
    echo("\nwhat the recording holds (this session):\n" + out.getvalue().rstrip())
