"""Replay a pod lifecycle recorded against one private containerd against a freshly started one.

Needs root and Debian's containerd package (tests/containerd/setup.sh installs it and builds the
images); skipped otherwise, as tests/test_containerd.py. The pods' cgroup parent and log
folder belong to the test, not to either containerd, so the replayed RunPodSandbox is valid on
the second one and the recording's paths mean the same thing there.

The second test replays the same recording against a fresh containerd whose busybox reference
names another image (built like tests/containerd/build_images.py builds busybox, plus one
file and one label): the replay must exit 1 and name each call whose answer carries the image's
id or size (ImageStatus, ListImages, ListContainers, ContainerStatus), and nothing else.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from types import ModuleType

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers import containerd_harness as harness
from tests.helpers.containerd_fixtures import running_containerd
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.recordings import cli_argv

pytestmark = [pytest.mark.containerd, pytest.mark.timeout(180)]


@pytest.fixture
def private_containerd() -> Iterator[harness.Containerd]:
    with running_containerd() as ctd:
        yield ctd


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
        # verbose: containerd's `info` JSON holds the pids and ids of this run
        rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr, verbose=True), timeout=10)
        rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True), timeout=10)
        rt.ExecSync(v1.ExecSyncRequest(container_id=ctr, cmd=["echo", "hello"], timeout=10), timeout=30)
        with pytest.raises(grpc.RpcError):
            rt.ContainerStatus(v1.ContainerStatusRequest(container_id="0" * 64), timeout=10)
        rt.StopContainer(v1.StopContainerRequest(container_id=ctr, timeout=1), timeout=60)
        rt.RemoveContainer(v1.RemoveContainerRequest(container_id=ctr), timeout=60)
        rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.ListPodSandbox(v1.ListPodSandboxRequest(), timeout=10)


def record(ctd: harness.Containerd, work: pathlib.Path, cgroup_parent: str) -> pathlib.Path:
    """Run `lifecycle` through a recording proxy in front of ctd; the database it wrote."""
    db = work / "rec.db"
    with ProxyProcess(work / "p.sock", ctd.sock, "--db", str(db)) as proxy:
        lifecycle(work / "p.sock", cgroup_parent, work / "logs")
        assert proxy.stop() == 0
    return db


# Each test containerd has its own root and state folders under /tmp (a node's are the same
# on both runs): verbose info names them.
HARNESS_FOLDERS = ("--ignore", "info.info.runtimeOptions.root", "--ignore", "info.info.runtimeSpec.mounts[*].source")


def replay(db: pathlib.Path, target: harness.Containerd, report: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_argv(), "replay", str(db), "--target", f"unix://{target.sock}",
                           "--allow-mutations", "--report", str(report), *HARNESS_FOLDERS],
                          capture_output=True, text=True, timeout=150)


def test_a_lifecycle_recorded_against_containerd_replays_against_a_fresh_one(
        private_containerd: harness.Containerd) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="crirc-", dir="/tmp"))
    cgroup_parent = f"/crirc-{uuid.uuid4().hex[:8]}"
    try:
        db = record(private_containerd, work, cgroup_parent)
        private_containerd.stop()
        fresh = harness.Containerd()
        fresh.start()
        try:
            done = replay(db, fresh, work / "r.json")
        finally:
            fresh.stop()
        report = json.loads((work / "r.json").read_text())
        differences = [(c["method"], d["path"]) for c in report["calls"] for d in c["differences"]]
        assert done.returncode == 0, done.stdout + done.stderr + str(differences)
        assert report["summary"]["matched"] == report["summary"]["calls"] == 18
    finally:
        harness.remove_cgroups(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)


# --- the same recording against a containerd whose busybox image is another one --------------


def _build_images_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cri_proxy_test_build_images", harness.BUILD_IMAGES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_busybox_variant(out: pathlib.Path) -> pathlib.Path:
    """An image named like the test busybox, built the way build_images.py builds it (so it
    runs the same commands), with one more file in its layer and one more label: its id
    (config digest), its layer and its size all differ from the real one's."""
    bi = _build_images_module()
    binary = bi.BUSYBOX_BIN.read_bytes()
    note = b"not the busybox image the recording saw\n"
    entries = [(bi._dir_info("bin"), None), (bi._file_info("bin/busybox", len(binary)), binary)]
    entries += [(bi._symlink_info("bin/" + applet, "busybox"), None) for applet in bi.BUSYBOX_APPLETS]
    for name in ("dev", "proc", "sys", "etc", "tmp", "root"):
        entries.append((bi._dir_info(name), None))
    entries.append((bi._file_info("etc/variant", len(note), 0o644), note))
    layer, diff_id = bi._layer(entries)
    config = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/", "Labels": {"cri-proxy.test/role": "variant"}}
    path = out / "busybox-variant.tar"
    bi._layout_tarball(path, harness.BUSYBOX_REF, layer, diff_id, config)
    return path


def busybox_status(sock: pathlib.Path) -> v1.Image:
    with grpc.insecure_channel(f"unix://{sock}", options=harness.CHANNEL_OPTIONS) as channel:
        img = v1_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
        request = v1.ImageStatusRequest(image=v1.ImageSpec(image=harness.BUSYBOX_REF))
        image: v1.Image = img.ImageStatus(request, timeout=10).image
        return image


def swap_busybox(ctd: harness.Containerd, variant: pathlib.Path, recorded_id: str, timeout: float = 15) -> v1.Image:
    """Replace ctd's busybox with the variant: CRI RemoveImage (every reference, so the old
    image leaves the CRI's cache entirely, unlike `ctr images rm`), then import; wait until
    the CRI plugin's image cache (fed by containerd's events) shows the variant; its status."""
    with grpc.insecure_channel(f"unix://{ctd.sock}", options=harness.CHANNEL_OPTIONS) as channel:
        img = v1_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call,unused-ignore]
        img.RemoveImage(v1.RemoveImageRequest(image=v1.ImageSpec(image=harness.BUSYBOX_REF)), timeout=30)
    ctd.import_image(variant)
    deadline = time.monotonic() + timeout
    while True:
        image = busybox_status(ctd.sock)
        if image.id and image.id != recorded_id:
            return image
        assert time.monotonic() < deadline, f"the CRI still shows busybox as {image.id or 'missing'}"
        time.sleep(0.05)


def test_a_replay_against_a_containerd_with_another_image_reports_the_differences(
        private_containerd: harness.Containerd) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="crirc-", dir="/tmp"))
    cgroup_parent = f"/crirc-{uuid.uuid4().hex[:8]}"
    try:
        recorded = busybox_status(private_containerd.sock)
        db = record(private_containerd, work, cgroup_parent)
        private_containerd.stop()
        variant = build_busybox_variant(work)
        fresh = harness.Containerd()
        fresh.start()
        try:
            replaced = swap_busybox(fresh, variant, recorded.id)
            done = replay(db, fresh, work / "r.json")
        finally:
            fresh.stop()
        assert replaced.size != recorded.size
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "Traceback" not in output and "cri-proxy: error" not in output, output
        report = json.loads((work / "r.json").read_text())
        summary = report["summary"]
        assert summary["calls"] == 18 and summary["skipped"] == 0 and not summary["ok"], summary
        # What names the image by id differs; everything else matches.
        differed = sorted((c["method"], c["call_id"]) for c in report["calls"] if c["result"] == "differed")
        assert [m for m, _ in differed] == ["ContainerStatus", "ContainerStatus", "ImageStatus", "ListContainers",
                                            "ListImages"], differed  # the second ContainerStatus: verbose
        assert summary["differed"] == 5 and summary["matched"] == 13 and summary["failed"] == 0, summary
        calls = {c["method"]: c for c in report["calls"] if c["method"] in ("ImageStatus", "ListImages")}

        status = calls["ImageStatus"]
        assert status["result"] == "differed", status
        diffs = {d["path"]: d for d in status["differences"]}
        assert diffs["image.id"]["recorded"] == recorded.id and diffs["image.id"]["replayed"] == replaced.id, diffs
        assert sorted(diffs) == ["image.id", "image.size"], diffs
        assert diffs["image.size"]["replayed"] == str(replaced.size) != diffs["image.size"]["recorded"], diffs

        listing = calls["ListImages"]
        assert listing["result"] == "differed", listing
        paths = {d["path"]: d for d in listing["differences"]}
        gone, new = paths[f"images[id={recorded.id}]"], paths[f"images[id={replaced.id}]"]
        assert gone["replayed"] is None and gone["recorded"]["id"] == recorded.id, gone
        assert new["recorded"] is None and new["replayed"]["id"] == replaced.id, new
        assert len(paths) == 2, paths

        by_id = [c for c in report["calls"] if c["method"] in ("ListContainers", "ContainerStatus")
                 and c["result"] == "differed"]
        for call in by_id:  # the container's image_ref, under its recorded (remapped back) id
            assert [(d["recorded"], d["replayed"]) for d in call["differences"]] == [(recorded.id, replaced.id)], call
            assert call["differences"][0]["path"].endswith("image_ref"), call

        # The terminal summary names each differing call, and the per-method table counts them.
        for method, call_id in differed:
            assert f"call {call_id} {method}: differed" in done.stdout, done.stdout
        assert "18 calls" in done.stdout and "13 matched, 5 differed, 0 failed, 0 skipped" in done.stdout, done.stdout
    finally:
        harness.remove_cgroups(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)


# --- the same recording served back: a client replaying the sequence gets containerd's answers --


def recorded_sequence(db: pathlib.Path) -> list[tuple[str, bytes, bytes | None, int]]:
    """(path, request bytes, first response bytes or None, status) of each recorded call, in order."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [(path, req or b"", resp, status) for path, req, resp, status in conn.execute(
            "SELECT c.path, rq.data, rs.data, c.status_code FROM calls c "
            "LEFT JOIN messages mq ON mq.call_id = c.id AND mq.direction = 'request' AND mq.idx = 0 "
            "LEFT JOIN payloads rq ON rq.id = mq.payload_id "
            "LEFT JOIN messages ms ON ms.call_id = c.id AND ms.direction = 'response' AND ms.idx = 0 "
            "LEFT JOIN payloads rs ON rs.id = ms.payload_id ORDER BY c.id")]
    finally:
        conn.close()


def test_the_containerd_recording_served_back_answers_as_containerd_did(
        private_containerd: harness.Containerd) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix="crirc-", dir="/tmp"))
    cgroup_parent = f"/crirc-{uuid.uuid4().hex[:8]}"
    serve = None
    try:
        db = record(private_containerd, work, cgroup_parent)
        sequence = recorded_sequence(db)
        assert len(sequence) == 18
        sock = work / "served.sock"
        serve = subprocess.Popen([*cli_argv(), "serve", str(db), "--listen", f"unix://{sock}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        harness.wait_for_socket(sock, 15, serve)
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            for path, request, recorded, status in sequence:
                call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
                try:
                    answer = call(request, timeout=10)
                except grpc.RpcError as exc:
                    assert exc.code().value[0] == status != 0, path
                    continue
                assert status == 0 and answer == recorded, path
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(10)
        harness.remove_cgroups(cgroup_parent)
        shutil.rmtree(work, ignore_errors=True)
