"""The proxy in front of a real containerd 1.6: every CRI call, v1 and v1alpha2, both ways.

Each test talks to the same private containerd twice, directly and through a `cri-proxy run`
subprocess, back to back. Read-only answers must be equal (after zeroing the fields that change
between two calls: stats counters and timestamps); mutating calls must succeed or fail alike and
return answers of the same shape; errors must carry the same code and details. containerd's own
API (containerd.services.*) and `ctr` must work through the proxy too.

Needs root and Debian's containerd package (tests/containerd/setup.sh installs it and builds the
images); skipped otherwise.
"""

from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import text_format
from google.protobuf.message import Message

from tests import containerd_harness as harness
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2

pytestmark = [pytest.mark.containerd, pytest.mark.timeout(60)]

HEX_ID = re.compile(r"[0-9a-f]{64}")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def containerd() -> Iterator[harness.Containerd]:
    """One private containerd for the whole session, with the test images imported."""
    reason = harness.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    ctd = harness.Containerd()
    ctd.start()
    try:
        yield ctd
    finally:
        sock, folder = ctd.sock, ctd.dir
        ctd.stop()
        assert harness.processes_with_arg(str(sock)) == [], "shims outlived containerd"
        assert harness.mounts_under(folder) == [], "mounts outlived containerd"


@pytest.fixture
def proxy(containerd: harness.Containerd, sock_dir: pathlib.Path, cli_cmd: list[str]) -> Iterator[pathlib.Path]:
    """A `cri-proxy run` subprocess in front of containerd; yields its socket, checks it exits 0."""
    sock = sock_dir / "proxy.sock"
    log_path = sock_dir / "proxy.log"
    argv = [*cli_cmd, "run", "--listen", f"unix://{sock}", "--runtime-endpoint", f"unix://{containerd.sock}"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        harness.wait_for_socket(sock, 15, proc)
        yield sock
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                pytest.fail(f"proxy ignored SIGTERM; log:\n{log_path.read_text(errors='replace')}")
    assert proc.returncode == 0, f"proxy exited {proc.returncode}; log:\n{log_path.read_text(errors='replace')}"


@dataclass(frozen=True)
class Api:
    """One CRI version: its package name on the wire and its generated messages."""

    name: str
    pb: ModuleType


@pytest.fixture(params=[Api("v1", v1), Api("v1alpha2", v1alpha2)], ids=lambda api: api.name)
def api(request: pytest.FixtureRequest) -> Api:
    param: Api = request.param
    return param


# --- calling both ways ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one unary call returned: the raw response bytes or the error."""

    code: grpc.StatusCode
    details: str | None
    raw: bytes | None


def _serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


class Both:
    """Channels to containerd directly and through the proxy; calls one CRI method both ways."""

    def __init__(self, api: Api, direct: pathlib.Path, via: pathlib.Path) -> None:
        self.api = api
        self.direct = grpc.insecure_channel(f"unix://{direct}", options=harness.CHANNEL_OPTIONS)
        self.via = grpc.insecure_channel(f"unix://{via}", options=harness.CHANNEL_OPTIONS)

    def close(self) -> None:
        self.direct.close()
        self.via.close()

    def _method(self, name: str) -> tuple[str, type[Message]]:
        for service in self.api.pb.DESCRIPTOR.services_by_name.values():
            method = service.methods_by_name.get(name)
            if method is not None:
                return f"/{service.full_name}/{name}", getattr(self.api.pb, method.output_type.name)
        raise KeyError(name)

    def outcome(self, channel: grpc.Channel, name: str, request: Message, timeout: float = 30) -> Outcome:
        path, _ = self._method(name)
        call = channel.unary_unary(path, request_serializer=_serialize, response_deserializer=None)
        try:
            raw = call(request, timeout=timeout)
        except grpc.RpcError as err:
            return Outcome(err.code(), err.details(), None)
        return Outcome(grpc.StatusCode.OK, None, raw)

    def parse(self, name: str, outcome: Outcome) -> Any:
        assert outcome.code == grpc.StatusCode.OK, f"{name}: {outcome.code} {outcome.details}"
        _, response_type = self._method(name)
        return response_type.FromString(outcome.raw or b"")

    def call(self, channel: grpc.Channel, name: str, request: Message, timeout: float = 30) -> Any:
        return self.parse(name, self.outcome(channel, name, request, timeout))

    def read(self, name: str, request: Message, normalize: Callable[[Any], None] | None = None) -> Any:
        """Make a read-only call both ways back to back; the answers must be equal."""
        direct = self.parse(name, self.outcome(self.direct, name, request))
        via = self.parse(name, self.outcome(self.via, name, request))
        for response in (direct, via):
            if normalize is not None:
                normalize(response)
            sort_lists(response)
        assert text_format.MessageToString(via) == text_format.MessageToString(direct), name
        assert via == direct, name
        return via

    def fails_alike(self, name: str, request: Message) -> Outcome:
        """Make a call both ways that must fail; code and details must be identical."""
        direct = self.outcome(self.direct, name, request)
        via = self.outcome(self.via, name, request)
        assert direct.code != grpc.StatusCode.OK, f"{name} unexpectedly succeeded"
        assert (via.code, via.details) == (direct.code, direct.details), name
        return via


@pytest.fixture
def both(api: Api, containerd: harness.Containerd, proxy: pathlib.Path) -> Iterator[Both]:
    pair = Both(api, containerd.sock, proxy)
    try:
        yield pair
    finally:
        pair.close()


# --- normalizing ------------------------------------------------------------------------------

# containerd's stores are Go maps, so List* answers come in any order: compare them sorted.
LIST_FIELDS = {"items", "containers", "images", "stats", "image_filesystems", "container_filesystems"}


def _sort_key(msg: Message) -> str:
    fields = msg.DESCRIPTOR.fields_by_name
    if "id" in fields:
        return str(getattr(msg, "id"))
    if "attributes" in fields:
        return str(getattr(msg, "attributes").id)
    return msg.SerializeToString(deterministic=True).hex()


def sort_lists(msg: Message) -> None:
    for desc, value in msg.ListFields():
        if desc.name in LIST_FIELDS and desc.is_repeated and desc.message_type is not None:
            ordered = sorted(value, key=_sort_key)
            copies = [type(item)() for item in ordered]
            for copy, item in zip(copies, ordered):
                copy.CopyFrom(item)
            del value[:]
            value.extend(copies)
        if desc.name == "repo_tags":
            ordered_tags = sorted(value)
            del value[:]
            value.extend(ordered_tags)
    for desc, value in msg.ListFields():
        if desc.message_type is None or desc.message_type.GetOptions().map_entry:
            continue
        for item in value if desc.is_repeated else [value]:
            sort_lists(item)


def zero_volatile(msg: Message) -> None:
    """Zero what changes between two calls a few ms apart: sample timestamps and usage counters
    (CRI's UInt64Value wrappers). Presence is kept, so the structure is still compared."""
    for desc, value in msg.ListFields():
        if desc.name == "timestamp" and desc.message_type is None:
            msg.ClearField(desc.name)
            setattr(msg, desc.name, 0)
        elif desc.message_type is None or desc.message_type.GetOptions().map_entry:
            continue
        elif desc.message_type.name == "UInt64Value":
            value.value = 0
        else:
            for item in value if desc.is_repeated else [value]:
                zero_volatile(item)


def same_shape(direct: Message, via: Message) -> None:
    """Answers to two mutating calls: same populated fields, ids of the same form."""
    assert [d.name for d, _ in direct.ListFields()] == [d.name for d, _ in via.ListFields()]
    for desc, value in via.ListFields():
        if desc.name.endswith("_id"):
            assert HEX_ID.fullmatch(value), value


# --- requests ---------------------------------------------------------------------------------


def pod_config(pb: ModuleType, containerd: harness.Containerd, name: str, pair: str) -> Message:
    """A host-network pod (no CNI here) that sets no hostname."""
    uid = uuid.uuid4().hex
    config: Message = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="cri-proxy-test", attempt=0),
        labels={"app": "cri-proxy-test", "pair": pair, "side": name.rsplit("-", 1)[-1]},
        annotations={"cri-proxy/test": name},
        log_directory=str(containerd.dir / "logs" / uid),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=f"{containerd.cgroup_parent}/pod{uid}", security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
    )
    return config


def container_config(pb: ModuleType) -> Message:
    config: Message = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
        image=pb.ImageSpec(image=harness.BUSYBOX_REF),
        command=["sleep", "3600"],
        labels={"app": "cri-proxy-test"},
        log_path="sleeper.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD))),
    )
    return config


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


def test_pull_and_remove_image(both: Both, containerd: harness.Containerd) -> None:
    pb = both.api.pb
    # No registry: containerd resolves even a present image remotely, so PullImage fails, and
    # must fail identically through the proxy.
    failed = both.fails_alike("PullImage", pb.PullImageRequest(image=pb.ImageSpec(image=harness.BUSYBOX_REF)))
    assert failed.code == grpc.StatusCode.UNKNOWN
    assert failed.details is not None
    assert failed.details.startswith(f'failed to pull and unpack image "{harness.BUSYBOX_REF}"')
    assert harness.UNREACHABLE_REGISTRY.removeprefix("http://") in failed.details

    containerd.import_image(harness.IMAGES_DIR / "throwaway.tar")
    spec = pb.ImageSpec(image=harness.THROWAWAY_REF)
    present = both.read("ImageStatus", pb.ImageStatusRequest(image=spec))
    assert harness.THROWAWAY_REF in present.image.repo_tags
    removed = both.call(both.via, "RemoveImage", pb.RemoveImageRequest(image=spec))
    assert removed == pb.RemoveImageResponse()
    gone = both.read("ImageStatus", pb.ImageStatusRequest(image=spec))
    assert not gone.HasField("image")
    # Removing what is gone succeeds, both ways.
    for channel in (both.direct, both.via):
        assert both.outcome(channel, "RemoveImage", pb.RemoveImageRequest(image=spec)).code == grpc.StatusCode.OK
    still = both.read("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=harness.BUSYBOX_REF)))
    assert harness.BUSYBOX_REF in still.image.repo_tags


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
        assert outcomes[0] == outcomes[1] == Outcome(grpc.StatusCode.OK, None, b""), name


@dataclass
class Side:
    """One pod with one container, made through one channel (direct or via the proxy)."""

    channel: grpc.Channel
    pod_id: str = ""
    container_id: str = ""


def run_pods(both: Both, containerd: harness.Containerd, pair: str) -> tuple[Side, Side]:
    """Run a pod directly and one through the proxy; the answers must look alike."""
    pb = both.api.pb
    direct, via = Side(both.direct), Side(both.via)
    answers = []
    for side in (direct, via):
        name = f"{pair}-{'direct' if side is direct else 'via'}"
        config = pod_config(pb, containerd, name, pair)
        answer = both.call(side.channel, "RunPodSandbox", pb.RunPodSandboxRequest(config=config), timeout=60)
        side.pod_id = answer.pod_sandbox_id
        answers.append(answer)
    same_shape(*answers)
    answers.clear()
    for side in (direct, via):
        request = pb.CreateContainerRequest(pod_sandbox_id=side.pod_id, config=container_config(pb),
                                            sandbox_config=pod_config(pb, containerd, "unused", pair))
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
        stop_and_remove(both, direct, via)
    finally:
        for side in (direct, via):
            both.outcome(both.direct, "RemovePodSandbox", both.api.pb.RemovePodSandboxRequest(pod_sandbox_id=side.pod_id))
    left = both.read("ListPodSandbox", both.api.pb.ListPodSandboxRequest(
        filter=both.api.pb.PodSandboxFilter(label_selector={"pair": pair})))
    assert list(left.items) == []


def test_get_container_events_is_unimplemented_both_ways(containerd: harness.Containerd, proxy: pathlib.Path) -> None:
    """containerd 1.6 has no GetContainerEvents (1.7 added it); the server stream must fail alike."""
    outcomes = []
    for sock in (containerd.sock, proxy):
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            stream = channel.unary_stream("/runtime.v1.RuntimeService/GetContainerEvents",
                                          request_serializer=_serialize, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as caught:
                list(stream(v1.GetEventsRequest(), timeout=10))
            outcomes.append((caught.value.code(), caught.value.details()))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == grpc.StatusCode.UNIMPLEMENTED


def _strings(raw: bytes) -> list[bytes]:
    """The length-delimited fields of one flat protobuf message: enough to read containerd's
    VersionResponse and namespace names without its .proto files."""
    found: list[bytes] = []
    pos = 0
    while pos < len(raw):
        key, pos = _varint(raw, pos)
        wire_type = key & 7
        if wire_type == 2:
            length, pos = _varint(raw, pos)
            found.append(raw[pos:pos + length])
            pos += length
        elif wire_type == 0:
            _, pos = _varint(raw, pos)
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return found


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def test_containerd_api_through_the_proxy(containerd: harness.Containerd, proxy: pathlib.Path) -> None:
    """containerd's own services share the socket; the proxy must carry them too (ctr uses them)."""
    answers = []
    for sock in (containerd.sock, proxy):
        with grpc.insecure_channel(f"unix://{sock}") as channel:
            version = channel.unary_unary("/containerd.services.version.v1.Version/Version", None, None)
            namespaces = channel.unary_unary("/containerd.services.namespaces.v1.Namespaces/List", None, None)
            metadata = (("containerd-namespace", harness.NAMESPACE),)
            answers.append((version(b"", timeout=10), namespaces(b"", timeout=10, metadata=metadata)))
    assert answers[0] == answers[1]
    version_raw, namespaces_raw = answers[1]
    assert _strings(version_raw)[0].startswith(b"1.6.")
    assert b"k8s.io" in namespaces_raw

    server_version = containerd.ctr("version", address=proxy)
    assert re.search(r"Server:\s+Version:\s+1\.6\.", server_version), server_version
    assert containerd.ctr("images", "ls", "-q", address=proxy) == containerd.ctr("images", "ls", "-q")
    assert harness.BUSYBOX_REF in containerd.ctr("images", "ls", "-q", address=proxy)
