"""Shared by the replay tests: a recording made through the real proxy in front of the stand-in
runtime (a whole pod lifecycle, reads, a redacted pull, an error), and a way to run the CLI.

The recording is made once per test session (in its own event loop) and copied per test.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc
from tests.conftest import ROOT
from tests.helpers.proxyproc import ProxyProcess

PHASE_GAP_S = 0.6  # between the recording's phases: before the pod, while it runs, after it
MUTATIONS = 9  # state-changing calls in the recording
BUSYBOX = "docker.io/library/busybox:latest"
REDIS = "docker.io/library/redis:7"
MISSING_ID = "0" * 64


@dataclass(frozen=True)
class Recorded:
    db: pathlib.Path
    calls: int
    seconds: float  # first call start to last call start


async def _drive(channel: grpc.aio.Channel) -> None:
    rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
    await rt.Version(v1.VersionRequest())
    await rt.Status(v1.StatusRequest())
    await img.ListImages(v1.ListImagesRequest())
    await img.ImageStatus(v1.ImageStatusRequest(image=v1.ImageSpec(image=BUSYBOX)))
    await rt.ListContainers(v1.ListContainersRequest())
    await asyncio.sleep(PHASE_GAP_S)
    await img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=REDIS),
                                            auth=v1.AuthConfig(username="bob", password="hunter2")))
    config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="web", namespace="shop", uid="u1"),
                                 hostname="web", log_directory="/var/log/pods/shop_web_u1")
    pod = (await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))).pod_sandbox_id
    await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod))
    ctr = (await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="redis"), image=v1.ImageSpec(image=REDIS),
                                  log_path="redis/0.log", envs=[v1.KeyValue(key="PASSWORD", value=b"s3cret")])))
           ).container_id
    await rt.StartContainer(v1.StartContainerRequest(container_id=ctr))
    await rt.ListContainers(v1.ListContainersRequest())
    await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr))
    await rt.ListPodSandbox(v1.ListPodSandboxRequest(filter=v1.PodSandboxFilter(id=pod)))
    await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr, cmd=["echo", "hi"], timeout=5))
    with pytest.raises(grpc.aio.AioRpcError):
        await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=MISSING_ID))
    await img.ListImages(v1.ListImagesRequest())
    await asyncio.sleep(PHASE_GAP_S)
    await rt.StopContainer(v1.StopContainerRequest(container_id=ctr, timeout=1))
    await rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr))
    await rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod))
    await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod))
    await rt.ListContainers(v1.ListContainersRequest())
    events = rt.GetContainerEvents(v1.GetEventsRequest(), timeout=0.3)
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in events:
            pass
    await v1alpha2_grpc.RuntimeServiceStub(channel).Version(v1alpha2.VersionRequest())


async def start_container(rt: v1_grpc.RuntimeServiceStub, pod_name: str, uid: str, name: str) -> tuple[str, str]:
    """A pod `shop/pod_name` with one started busybox container `name`: their ids."""
    config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name=pod_name, namespace="shop", uid=uid))
    pod = (await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))).pod_sandbox_id
    ctr = (await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name=name), image=v1.ImageSpec(image=BUSYBOX))))
           ).container_id
    await rt.StartContainer(v1.StartContainerRequest(container_id=ctr))
    return pod, ctr


async def drive_verbose(channel: grpc.aio.Channel) -> None:
    """A pod and a container, and their verbose status: `info` holds a JSON document with
    pids and ids, which differ on every run."""
    rt = v1_grpc.RuntimeServiceStub(channel)
    pod, ctr = await start_container(rt, "db", "u2", "pg")
    await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr, verbose=True))
    await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True))


async def record_through_proxy(folder: pathlib.Path, drive: Callable[[grpc.aio.Channel], Awaitable[None]]) -> pathlib.Path:
    """`drive` through a recording proxy in front of a fresh stand-in runtime; the database."""
    server = await start_fake_runtime(f"unix://{folder}/rt.sock", api="both")
    try:
        async with ProxyProcess(folder / "p.sock", folder / "rt.sock", "--db", str(folder / "rec.db")) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{folder}/p.sock") as channel:
                await drive(channel)
            assert await proxy.astop() == 0
    finally:
        await server.stop(0)
    return folder / "rec.db"


async def _record(folder: pathlib.Path) -> None:
    await record_through_proxy(folder, _drive)


@pytest.fixture(scope="session")
def recording_master() -> Iterator[Recorded]:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="crir-", dir="/tmp"))
    try:
        asyncio.run(_record(folder))
        import sqlite3

        conn = sqlite3.connect(folder / "rec.db")
        count, first, last = conn.execute("SELECT count(*), min(started_unix), max(started_unix) FROM calls").fetchone()
        conn.close()
        yield Recorded(folder / "rec.db", int(count), float(last - first))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def recording(recording_master: Recorded, sock_dir: pathlib.Path) -> Recorded:
    """A private copy of the recording (replays write into it)."""
    copy = sock_dir / "rec.db"
    shutil.copy(recording_master.db, copy)
    return Recorded(copy, recording_master.calls, recording_master.seconds)


def cli_argv() -> list[str]:
    """The argv prefix that runs this checkout's `cri-proxy`."""
    return [sys.executable, "-m", "cri_proxy"]


async def run_cli(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*cli_argv(), *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


GOLDEN_DIR = ROOT / "tests" / "data" / "recordings"
GOLDEN = sorted(GOLDEN_DIR.glob("schema-v*.db"), key=lambda p: int(p.stem.removeprefix("schema-v")))  # one per version, frozen


def golden_sums() -> dict[str, str]:
    """The frozen files' sha256 as SHA256SUMS records them."""
    lines = (GOLDEN_DIR / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


def file_sha256(path: pathlib.Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
