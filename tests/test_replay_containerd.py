"""Replay a pod lifecycle recorded against one private containerd against a freshly started one.

Needs root and Debian's containerd package (tests/containerd/setup.sh installs it and builds the
images); skipped otherwise, as tests/test_containerd.py. The pods' cgroup parent and log
folder belong to the test, not to either containerd, so the replayed RunPodSandbox is valid on
the second one and the recording's paths mean the same thing there.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests import containerd_harness as harness
from tests.proxyproc import ProxyProcess
from tests.test_replay_fixtures import cli_argv

pytestmark = [pytest.mark.containerd, pytest.mark.timeout(180)]


@pytest.fixture
def private_containerd() -> Iterator[harness.Containerd]:
    reason = harness.skip_reason()
    if reason is not None:
        if harness.required():
            pytest.fail(f"CRI_PROXY_REQUIRE_CONTAINERD is set, but: {reason}")
        pytest.skip(reason)
    ctd = harness.Containerd()
    ctd.start()
    try:
        yield ctd
    finally:
        ctd.stop()


def lifecycle(sock: pathlib.Path, cgroup_parent: str, logs: pathlib.Path) -> None:
    """What a kubelet does for one pod with one container, plus reads and an error."""
    with grpc.insecure_channel(f"unix://{sock}", options=harness.CHANNEL_OPTIONS) as channel:
        rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
        rt.Version(v1.VersionRequest(), timeout=10)
        img.ListImages(v1.ListImagesRequest(), timeout=10)
        img.ImageStatus(v1.ImageStatusRequest(image=v1.ImageSpec(image=harness.BUSYBOX_REF)), timeout=10)
        ns = v1.NamespaceOption(network=v1.NODE, pid=v1.CONTAINER, ipc=v1.POD)
        config = v1.PodSandboxConfig(
            metadata=v1.PodSandboxMetadata(name="replayed", uid="uid-replayed", namespace="cri-proxy-test"),
            log_directory=str(logs),
            linux=v1.LinuxPodSandboxConfig(cgroup_parent=f"{cgroup_parent}/podreplayed",
                                           security_context=v1.LinuxSandboxSecurityContext(namespace_options=ns)))
        pod = rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
        rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=10)
        ctr = rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod, sandbox_config=config, config=v1.ContainerConfig(
            metadata=v1.ContainerMetadata(name="sleeper"), image=v1.ImageSpec(image=harness.BUSYBOX_REF),
            command=["sleep", "3600"], log_path="sleeper.log",
            linux=v1.LinuxContainerConfig(security_context=v1.LinuxContainerSecurityContext(namespace_options=ns)))),
            timeout=60).container_id
        rt.StartContainer(v1.StartContainerRequest(container_id=ctr), timeout=60)
        rt.ListContainers(v1.ListContainersRequest(filter=v1.ContainerFilter(pod_sandbox_id=pod)), timeout=10)
        rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr), timeout=10)
        rt.ExecSync(v1.ExecSyncRequest(container_id=ctr, cmd=["echo", "hello"], timeout=10), timeout=30)
        with pytest.raises(grpc.RpcError):
            rt.ContainerStatus(v1.ContainerStatusRequest(container_id="0" * 64), timeout=10)
        rt.StopContainer(v1.StopContainerRequest(container_id=ctr, timeout=1), timeout=60)
        rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr), timeout=60)
        rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.ListPodSandbox(v1.ListPodSandboxRequest(), timeout=10)


def test_a_lifecycle_recorded_against_containerd_replays_against_a_fresh_one(
        private_containerd: harness.Containerd) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="crirc-", dir="/tmp"))
    cgroup_parent = f"/crirc-{uuid.uuid4().hex[:8]}"
    try:
        db = work / "rec.db"
        with ProxyProcess(work / "p.sock", private_containerd.sock, "--db", str(db)) as proxy:
            lifecycle(work / "p.sock", cgroup_parent, work / "logs")
            assert proxy.stop() == 0
        private_containerd.stop()
        fresh = harness.Containerd()
        fresh.start()
        try:
            done = subprocess.run([*cli_argv(), "replay", str(db), "--target", f"unix://{fresh.sock}",
                                   "--allow-mutations", "--report", str(work / "r.json")],
                                  capture_output=True, text=True, timeout=150)
        finally:
            fresh.stop()
        report = json.loads((work / "r.json").read_text())
        assert done.returncode == 0, done.stdout + done.stderr
        assert report["summary"]["matched"] == report["summary"]["calls"] == 16
    finally:
        harness.remove_cgroups(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)
