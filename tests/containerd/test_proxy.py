"""The proxy in front of a real containerd 1.6: every CRI call, v1 and v1alpha2, both ways.

Each test talks to the same private containerd twice, directly and through a `cri-proxy run`
subprocess, back to back (tests/containerd_fixtures.py). Read-only answers must be equal (after
zeroing the fields that change between two calls: stats counters and timestamps); mutating calls
must succeed or fail alike and return answers of the same shape; errors must carry the same code
and details. containerd's own API (containerd.services.*) and `ctr` must work through the proxy.

Needs root and Debian's containerd package (tests/containerd/setup.sh installs it and builds the
images); skipped otherwise.
"""

from __future__ import annotations

import ipaddress
import pathlib
import random
import re
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import grpc
import pytest
from google.protobuf.message import Message

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from tests.helpers import containerd_harness as harness
from tests.helpers.containerd_events import EXEC_STARTED, Events
from tests.helpers.containerd_fixtures import (  # noqa: F401  (fixtures are found by name)
    Both,
    Outcome,
    ProxyRun,
    api,
    both,
    container_config,
    pod_config,
    proto_strings,
    proxy,
    same_shape,
    serialize,
    zero_volatile,
)

pytestmark = [pytest.mark.containerd, pytest.mark.timeout(60)]


# --- requests ---------------------------------------------------------------------------------








# --- tests ------------------------------------------------------------------------------------


def test_runtime_and_image_reads_are_identical(both: Both, containerd: harness.Containerd) -> None:
    pb = both.api.pb
    version = both.read("Version", pb.VersionRequest(version="0.1.0"))
    assert version.runtime_name == "containerd"
    assert version.runtime_api_version == both.api.name
    status = both.read("Status", pb.StatusRequest())
    ready = {cond.type: cond.status for cond in status.status.conditions}
    assert ready["RuntimeReady"] is True
    both.read("Status", pb.StatusRequest(verbose=True))

    images = both.read("ListImages", pb.ListImagesRequest())
    tags = {tag for image in images.images for tag in image.repo_tags}
    assert {harness.PAUSE_REF, harness.BUSYBOX_REF} <= tags
    both.read("ListImages", pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image=harness.PAUSE_REF))))
    present = both.read("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=harness.BUSYBOX_REF)))
    assert harness.BUSYBOX_REF in present.image.repo_tags
    both.read("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=harness.PAUSE_REF), verbose=True))
    absent = both.read("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image="localhost/absent:0")))
    assert not absent.HasField("image")
    fs = both.read("ImageFsInfo", pb.ImageFsInfoRequest(), normalize=zero_volatile)
    assert fs.image_filesystems[0].fs_id.mountpoint.startswith(str(containerd.dir))
    both.finish()


def test_pull_and_remove_image(both: Both, containerd: harness.Containerd) -> None:
    pb = both.api.pb
    # No registry: containerd resolves even a present image remotely, so PullImage fails, and
    # must fail identically through the proxy.
    failed = both.fails_alike("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=harness.BUSYBOX_REF)))
    assert failed.code == grpc.StatusCode.UNKNOWN
    assert failed.details is not None
    assert failed.details.startswith(f'failed to pull and unpack image "{harness.BUSYBOX_REF}"')
    assert harness.UNREACHABLE_REGISTRY.removeprefix("http://") in failed.details

    # CRI RemoveImage removes every tag of the image, hence an image of its own, imported anew
    # for each side.
    spec = pb.ImageSpec(image=harness.THROWAWAY_REF)
    answers = []
    for channel in (both.direct, both.via):
        containerd.import_image(harness.IMAGES_DIR / "throwaway.tar")
        present = both.read("ImageStatus", pb.ImageStatusRequest(image=spec))
        assert harness.THROWAWAY_REF in present.image.repo_tags
        answers.append(both.call(channel, "RemoveImage", pb.RemoveImageRequest(image=spec)))
        gone = both.read("ImageStatus", pb.ImageStatusRequest(image=spec))
        assert not gone.HasField("image")
    assert answers == [pb.RemoveImageResponse()] * 2
    # Removing what is gone succeeds, both ways.
    for channel in (both.direct, both.via):
        assert both.outcome(channel, "RemoveImage", pb.RemoveImageRequest(image=spec)).code == grpc.StatusCode.OK
    still = both.read("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=harness.BUSYBOX_REF)))
    assert harness.BUSYBOX_REF in still.image.repo_tags
    both.finish()


UNKNOWN_ID = "0" * 64

UNKNOWN_ID_CALLS: list[tuple[str, Callable[[ModuleType], Message]]] = [
    ("PodSandboxStatus", lambda pb: pb.PodSandboxStatusRequest(pod_sandbox_id=UNKNOWN_ID)),
    ("StopPodSandbox", lambda pb: pb.StopPodSandboxRequest(pod_sandbox_id=UNKNOWN_ID)),
    ("ContainerStatus", lambda pb: pb.ContainerStatusRequest(container_id=UNKNOWN_ID)),
    ("StartContainer", lambda pb: pb.StartContainerRequest(container_id=UNKNOWN_ID)),
    ("StopContainer", lambda pb: pb.StopContainerRequest(container_id=UNKNOWN_ID)),
    ("ExecSync", lambda pb: pb.ExecSyncRequest(container_id=UNKNOWN_ID, cmd=["true"])),
    ("Exec", lambda pb: pb.ExecRequest(container_id=UNKNOWN_ID, cmd=["true"], stdout=True)),
    ("Attach", lambda pb: pb.AttachRequest(container_id=UNKNOWN_ID, stdout=True)),
    ("PortForward", lambda pb: pb.PortForwardRequest(pod_sandbox_id=UNKNOWN_ID, port=[80])),
    ("ContainerStats", lambda pb: pb.ContainerStatsRequest(container_id=UNKNOWN_ID)),
    ("PodSandboxStats", lambda pb: pb.PodSandboxStatsRequest(pod_sandbox_id=UNKNOWN_ID)),
]


def test_unknown_ids_fail_identically(both: Both) -> None:
    """NOT_FOUND with the same details both ways (one proxy for all cases: each start costs)."""
    codes = {name: both.fails_alike(name, make(both.api.pb)).code for name, make in UNKNOWN_ID_CALLS}
    assert codes == {name: grpc.StatusCode.NOT_FOUND for name, _ in UNKNOWN_ID_CALLS}
    # Removing what does not exist is not an error in containerd, either way.
    for name, request in [
        ("RemoveContainer", both.api.pb.RemoveContainerRequest(container_id=UNKNOWN_ID)),
        ("RemovePodSandbox", both.api.pb.RemovePodSandboxRequest(pod_sandbox_id=UNKNOWN_ID)),
    ]:
        outcomes = [both.outcome(channel, name, request) for channel in (both.direct, both.via)]
        assert outcomes[0] == outcomes[1], name
        assert (outcomes[0].code, outcomes[0].raw) == (grpc.StatusCode.OK, b""), name
    both.finish()


@dataclass
class Side:
    """One pod with one container, made through one channel (direct or via the proxy)."""

    channel: grpc.Channel
    pod_config: Message | None = None
    pod_id: str = ""
    container_id: str = ""


def run_pods(both: Both, containerd: harness.Containerd, pair: str) -> tuple[Side, Side]:
    """Run a pod directly and one through the proxy; the answers must look alike."""
    pb = both.api.pb
    direct, via = Side(both.direct), Side(both.via)
    answers = []
    for side in (direct, via):
        name = f"{pair}-{'direct' if side is direct else 'via'}"
        side.pod_config = pod_config(pb, containerd, name, pair)
        request = pb.RunPodSandboxRequest(config=side.pod_config)
        answer = both.call(side.channel, "RunPodSandbox", request, timeout=60)
        side.pod_id = answer.pod_sandbox_id
        answers.append(answer)
    same_shape(*answers)
    answers.clear()
    for side in (direct, via):
        request = pb.CreateContainerRequest(pod_sandbox_id=side.pod_id, config=container_config(pb),
                                            sandbox_config=side.pod_config)
        answer = both.call(side.channel, "CreateContainer", request)
        side.container_id = answer.container_id
        answers.append(answer)
    same_shape(*answers)
    started = [both.call(side.channel, "StartContainer", pb.StartContainerRequest(container_id=side.container_id))
               for side in (direct, via)]
    assert started == [pb.StartContainerResponse()] * 2
    return direct, via


def check_pod_reads(both: Both, pair: str, side: Side) -> None:
    pb = both.api.pb
    status = both.read("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=side.pod_id))
    assert status.status.state == pb.SANDBOX_READY
    assert status.status.linux.namespaces.options.network == pb.NODE
    both.read("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=side.pod_id, verbose=True))
    everything = both.read("ListPodSandbox", pb.ListPodSandboxRequest())
    assert side.pod_id in {pod.id for pod in everything.items}
    filters = [
        pb.PodSandboxFilter(id=side.pod_id),
        pb.PodSandboxFilter(label_selector={"pair": pair}),
        pb.PodSandboxFilter(label_selector={"pair": pair, "side": "via"},
                            state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY)),
        pb.PodSandboxFilter(label_selector={"pair": "no-such-pair"}),
    ]
    counts = [len(both.read("ListPodSandbox", pb.ListPodSandboxRequest(filter=f)).items) for f in filters]
    assert counts == [1, 2, 1, 0]


def check_container_reads(both: Both, pair: str, side: Side) -> None:
    pb = both.api.pb
    status = both.read("ContainerStatus", pb.ContainerStatusRequest(container_id=side.container_id))
    assert status.status.state == pb.CONTAINER_RUNNING
    assert status.status.image.image == harness.BUSYBOX_REF
    both.read("ContainerStatus", pb.ContainerStatusRequest(container_id=side.container_id, verbose=True))
    everything = both.read("ListContainers", pb.ListContainersRequest())
    assert side.container_id in {c.id for c in everything.containers}
    running = pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)
    filters = [
        pb.ContainerFilter(id=side.container_id),
        pb.ContainerFilter(pod_sandbox_id=side.pod_id, state=running),
        pb.ContainerFilter(label_selector={"app": "cri-proxy-test"}, pod_sandbox_id=side.pod_id),
        pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED), pod_sandbox_id=side.pod_id),
    ]
    counts = [len(both.read("ListContainers", pb.ListContainersRequest(filter=f)).containers) for f in filters]
    assert counts == [1, 1, 1, 0]


def check_exec_sync(both: Both, side: Side) -> None:
    pb = both.api.pb
    hello = both.read("ExecSync", pb.ExecSyncRequest(container_id=side.container_id, cmd=["echo", "hello"], timeout=10))
    assert (hello.stdout, hello.stderr, hello.exit_code) == (b"hello\n", b"", 0)
    script = ["sh", "-c", "cat /proc/1/cmdline; echo oops >&2; exit 3"]
    failing = both.read("ExecSync", pb.ExecSyncRequest(container_id=side.container_id, cmd=script, timeout=10))
    assert (failing.stdout, failing.stderr, failing.exit_code) == (b"sleep\x003600\x00", b"oops\n", 3)


def check_stats(both: Both, pair: str, side: Side) -> None:
    pb = both.api.pb
    stats = both.read("ContainerStats", pb.ContainerStatsRequest(container_id=side.container_id), zero_volatile)
    assert stats.stats.attributes.id == side.container_id
    assert stats.stats.HasField("cpu") and stats.stats.HasField("memory")
    listed = both.read("ListContainerStats", pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=side.pod_id)), zero_volatile)
    assert [s.attributes.id for s in listed.stats] == [side.container_id]
    both.read("ListContainerStats", pb.ListContainerStatsRequest(), zero_volatile)
    pod = both.read("PodSandboxStats", pb.PodSandboxStatsRequest(pod_sandbox_id=side.pod_id), zero_volatile)
    assert pod.stats.attributes.id == side.pod_id
    pods = both.read("ListPodSandboxStats", pb.ListPodSandboxStatsRequest(
        filter=pb.PodSandboxStatsFilter(label_selector={"pair": pair})), zero_volatile)
    assert len(pods.stats) == 2


def check_updates(both: Both, direct: Side, via: Side) -> None:
    """The remaining mutating calls, made on each side: same (empty) answers."""
    pb = both.api.pb
    resources = pb.LinuxContainerResources(cpu_shares=512, cpu_period=100000, cpu_quota=50000)
    node = pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.251.0.0/24"))
    for name, make in [
        ("UpdateContainerResources", lambda side: pb.UpdateContainerResourcesRequest(
            container_id=side.container_id, linux=resources)),
        ("ReopenContainerLog", lambda side: pb.ReopenContainerLogRequest(container_id=side.container_id)),
        ("UpdateRuntimeConfig", lambda side: pb.UpdateRuntimeConfigRequest(runtime_config=node)),
    ]:
        answers = [both.call(side.channel, name, make(side)) for side in (direct, via)]
        assert answers[0] == answers[1] == getattr(pb, f"{name}Response")(), name
    both.read("ContainerStatus", pb.ContainerStatusRequest(container_id=via.container_id))


def check_streaming_urls(both: Both, side: Side) -> None:
    """Exec, Attach and PortForward answer with a URL on containerd's own streaming server and a
    single-use token: the same server both ways, different tokens."""
    pb = both.api.pb
    requests = [
        ("Exec", pb.ExecRequest(container_id=side.container_id, cmd=["sh"], stdin=True, stdout=True)),
        ("Attach", pb.AttachRequest(container_id=side.container_id, stdout=True, stderr=True)),
        ("PortForward", pb.PortForwardRequest(pod_sandbox_id=side.pod_id, port=[8080])),
    ]
    for name, request in requests:
        direct = both.call(both.direct, name, request).url
        via = both.call(both.via, name, request).url
        prefix = re.compile(r"http://127\.0\.0\.1:\d+/" + name.lower().replace("portforward", "portforward") + "/")
        assert prefix.match(via), via
        assert via.rsplit("/", 1)[0] == direct.rsplit("/", 1)[0]
        assert via != direct, "streaming tokens are single-use"


def stop_and_remove(both: Both, direct: Side, via: Side) -> None:
    """Stop and remove both pods step by step, comparing answers and the states in between."""
    pb = both.api.pb
    steps: list[tuple[str, Callable[[Side], Message]]] = [
        ("StopContainer", lambda side: pb.StopContainerRequest(container_id=side.container_id, timeout=0)),
        ("RemoveContainer", lambda side: pb.RemoveContainerRequest(container_id=side.container_id)),
        ("StopPodSandbox", lambda side: pb.StopPodSandboxRequest(pod_sandbox_id=side.pod_id)),
        ("RemovePodSandbox", lambda side: pb.RemovePodSandboxRequest(pod_sandbox_id=side.pod_id)),
    ]
    for name, make in steps:
        answers = [both.call(side.channel, name, make(side)) for side in (direct, via)]
        assert answers[0] == answers[1] == getattr(pb, f"{name}Response")()
        if name == "StopContainer":
            exited = both.read("ContainerStatus", pb.ContainerStatusRequest(container_id=via.container_id))
            assert exited.status.state == pb.CONTAINER_EXITED
            assert exited.status.exit_code == 128 + signal.SIGKILL
        elif name == "RemoveContainer":
            both.fails_alike("ContainerStatus", pb.ContainerStatusRequest(container_id=via.container_id))
        elif name == "StopPodSandbox":
            stopped = both.read("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=via.pod_id))
            assert stopped.status.state == pb.SANDBOX_NOTREADY
        else:
            missing = both.fails_alike("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=via.pod_id))
            assert missing.code == grpc.StatusCode.NOT_FOUND


def test_pod_and_container_lifecycle(both: Both, containerd: harness.Containerd) -> None:
    pair = f"{both.api.name}-{uuid.uuid4().hex[:8]}"
    direct, via = run_pods(both, containerd, pair)
    try:
        check_pod_reads(both, pair, via)
        check_container_reads(both, pair, via)
        check_exec_sync(both, via)
        check_stats(both, pair, via)
        check_streaming_urls(both, via)
        check_updates(both, direct, via)
        stop_and_remove(both, direct, via)
    finally:
        for side in (direct, via):
            both.outcome(both.direct, "RemovePodSandbox", both.api.pb.RemovePodSandboxRequest(pod_sandbox_id=side.pod_id))
    left = both.read("ListPodSandbox", both.api.pb.ListPodSandboxRequest(
        filter=both.api.pb.PodSandboxFilter(label_selector={"pair": pair})))
    assert list(left.items) == []
    both.finish()


def test_deadlines_and_cancellation_reach_containerd(both: Both, containerd: harness.Containerd) -> None:
    """containerd kills an exec when its call ends: through the proxy, the caller's deadline and
    cancellation must reach it, or the process would outlive the call."""
    pb = both.api.pb
    pair = f"{both.api.name}-{uuid.uuid4().hex[:8]}"
    direct, via = run_pods(both, containerd, pair)
    # Each step's `sleep` gets an argument of its own, unique to this run: /proc shows the
    # sleepers of every containerd on the machine (another checkout's suite may be at this step).
    arg = {step: f"{step}{random.randrange(10**5, 10**6)}" for step in ("103", "104", "105")}
    try:
        # ExecSync's own timeout is containerd's business: the same error both ways.
        request = pb.ExecSyncRequest(container_id=via.container_id, cmd=["sleep", arg["103"]], timeout=1)
        expired = both.fails_alike("ExecSync", request)
        assert expired.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # containerd kills the exec when its timeout ends and reaps it soon after the answer.
        assert wait_until_gone(arg["103"], 10), "the exec outlived its own timeout"
        # The caller's deadline: containerd must see it and kill the process.
        request = pb.ExecSyncRequest(container_id=via.container_id, cmd=["sleep", arg["104"]])
        late = both.outcome(both.via, "ExecSync", request, timeout=1)
        assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # Without propagation the process would live for years; containerd's kill and reaping
        # took over 3 s once in ten runs on a loaded 2-core machine, so it gets 10.
        assert wait_until_gone(arg["104"], 10), "the exec outlived the caller's deadline"
        check_cancellation(both, containerd, via, arg["105"])
    finally:
        stop_and_remove(both, direct, via)
    both.finish()


def check_cancellation(both: Both, containerd: harness.Containerd, via: Side, seconds: str) -> None:
    """The caller's cancellation, once containerd has started the exec: a process shows in
    /proc before the shim knows its pid, and a call cancelled then leaves one containerd
    cannot kill yet (tests/helpers/containerd_events.py)."""
    pb = both.api.pb
    events = Events(containerd.sock)
    try:
        quick = pb.ExecSyncRequest(container_id=via.container_id, cmd=["true"], timeout=10)
        assert events.subscribed(via.container_id, lambda: both.call(both.via, "ExecSync", quick)), \
            "ctr events never saw an exec start"
        path = both.method_path("ExecSync")
        call = both.via.unary_unary(path, request_serializer=serialize, response_deserializer=None)
        request = pb.ExecSyncRequest(container_id=via.container_id, cmd=["sleep", seconds])
        future = call.future(request, timeout=30)
        started = events.wait(EXEC_STARTED, via.container_id, 10)
        assert started is not None and wait_until_present(seconds, 5), "the exec never started"
        assert started["pid"] in sleepers(seconds)
        future.cancel()
        assert wait_until_gone(seconds, 10), "the exec outlived the caller's cancellation"
    finally:
        events.close()


def sleepers(seconds: str) -> list[int]:
    """Pids of `sleep SECONDS` processes (the argument makes them unique to one test step)."""
    found = []
    for pid in harness.processes_with_arg(seconds):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # it exited between the listing and this read
            continue
        if argv[0] == b"sleep":
            found.append(pid)
    return found


def wait_until_gone(seconds: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while sleepers(seconds):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_until_present(seconds: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not sleepers(seconds):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_pod_with_its_own_network(both: Both, containerd: harness.Containerd) -> None:
    """With the bridge CNI, a pod gets a network namespace, an address and a hostname."""
    if not containerd.cni:
        reason = "needs Debian's containernetworking-plugins (tests/containerd/setup.sh installs it)"
        if harness.required():
            pytest.fail(f"CRI_PROXY_REQUIRE_CONTAINERD is set, but this {reason}")
        pytest.skip(reason)
    pb = both.api.pb
    status = both.read("Status", pb.StatusRequest())
    assert {cond.type: cond.status for cond in status.status.conditions}["NetworkReady"] is True
    name = f"net-{both.api.name}-{uuid.uuid4().hex[:8]}"
    config = pod_config(pb, containerd, name, name, host_network=False)
    pod_id = both.call(both.via, "RunPodSandbox", pb.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
    try:
        pod = both.read("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert pod.status.linux.namespaces.options.network == pb.POD
        assert ipaddress.ip_address(pod.status.network.ip) in ipaddress.ip_network(containerd.subnet)
        create = pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config(pb, host_network=False),
                                           sandbox_config=config)
        container_id = both.call(both.via, "CreateContainer", create).container_id
        both.call(both.via, "StartContainer", pb.StartContainerRequest(container_id=container_id))
        hostname = both.read("ExecSync", pb.ExecSyncRequest(container_id=container_id, cmd=["hostname"], timeout=10))
        assert hostname.stdout == f"{name}\n".encode()
        # Only the pod's own loopback and bridge interface: not the host's.
        links = both.read("ExecSync", pb.ExecSyncRequest(container_id=container_id, cmd=["ls", "/sys/class/net"]))
        assert links.stdout.split() == [b"eth0", b"lo"]
    finally:
        both.call(both.via, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        both.call(both.via, "RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    both.fails_alike("PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    both.finish()


def test_get_container_events_is_unimplemented_both_ways(containerd: harness.Containerd, proxy: ProxyRun) -> None:
    """containerd 1.6 has no GetContainerEvents (1.7 added it); the server stream must fail alike."""
    outcomes = []
    for sock in (containerd.sock, proxy.sock):
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            stream = channel.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents",
                                          request_serializer=serialize, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as caught:
                list(stream(v1.GetEventsRequest(), timeout=10))
            outcomes.append((caught.value.code(), caught.value.details()))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == grpc.StatusCode.UNIMPLEMENTED
    proxy.finish()


def test_containerd_api_through_the_proxy(containerd: harness.Containerd, proxy: ProxyRun) -> None:
    """containerd's own services share the socket; the proxy must carry them too (ctr uses them)."""
    answers = []
    for sock in (containerd.sock, proxy.sock):
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            version = channel.unary_unary("/containerd.services.version.v1.Version/Version", None, None)
            namespaces = channel.unary_unary("/containerd.services.namespaces.v1.Namespaces/List", None, None)
            metadata = (("containerd-namespace", harness.NAMESPACE),)
            answers.append((version(b"", timeout=10), namespaces(b"", timeout=10, metadata=metadata)))
    assert answers[0] == answers[1]
    version_raw, namespaces_raw = answers[1]
    assert proto_strings(version_raw)[0].startswith(b"1.6.")
    assert b"k8s.io" in namespaces_raw

    server_version = containerd.ctr("version", address=proxy.sock)
    assert re.search(r"Server:\s+Version:\s+1\.6\.", server_version), server_version
    assert containerd.ctr("images", "ls", "-q", address=proxy.sock) == containerd.ctr("images", "ls", "-q")
    assert harness.BUSYBOX_REF in containerd.ctr("images", "ls", "-q", address=proxy.sock)
    proxy.finish()
