"""Fixtures and comparison tools for the tests against a real containerd (test_containerd.py).

- `containerd` (session): one private containerd (tests/containerd_harness.py), images imported;
  skipped without root or containerd, unless CRI_PROXY_REQUIRE_CONTAINERD=1 (CI) makes that fail.
- `proxy`: a `ProxyRun`, a `cri-proxy run` subprocess in front of it, on a socket in `sock_dir`;
  a test ends with `proxy.finish()` / `both.finish()` (exit 0 on SIGTERM, the recording whole);
  the teardown only stops it, and asserts nothing (a skipped test stays skipped).
- `api`: runtime.v1 or runtime.v1alpha2; `both`: a `Both` for that version.

`Both` makes one CRI call directly and through the proxy, back to back, with raw bytes on the
wire, and compares: read-only answers equal after `zero_volatile` (stats samples, timestamps)
and after sorting List* answers (containerd keeps its stores in Go maps, so their order is
arbitrary); errors with the same code and details.

test_containerd.py imports these fixtures by name, as it has no conftest of its own.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import signal
import sqlite3
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

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.store.varints import read_uvarint
from tests.helpers import containerd_harness as harness

HEX_ID = re.compile(r"[0-9a-f]{64}")


# --- fixtures ---------------------------------------------------------------------------------


@contextlib.contextmanager
def running_containerd() -> Iterator[harness.Containerd]:
    """A private containerd with the test images imported, skipped (or failed, where CI requires
    it) when this machine cannot run one; on exit nothing of it may be left behind."""
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
        sock, folder = ctd.sock, ctd.dir
        ctd.stop()
        assert harness.processes_with_arg(str(sock)) == [], "shims outlived containerd"
        assert harness.mounts_under(folder) == [], "mounts outlived containerd"


@pytest.fixture(scope="session")
def containerd() -> Iterator[harness.Containerd]:
    """One private containerd for the whole session."""
    with running_containerd() as ctd:
        yield ctd


@dataclass
class ProxyRun:
    """A recording `cri-proxy run` subprocess in front of containerd, listening on `sock`."""

    sock: pathlib.Path
    proc: subprocess.Popen[bytes]
    log_path: pathlib.Path
    db: pathlib.Path

    def stop(self) -> bool:
        """SIGTERM, then kill after 10 s; False when it had to be killed. Never asserts: the
        fixture's teardown calls it, also after a test that skipped or failed."""
        if self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return False
        return True

    def finish(self) -> None:
        """The test's last step: the proxy exits 0 on SIGTERM and what it recorded is whole."""
        if not self.stop():
            pytest.fail(f"proxy ignored SIGTERM; log:\n{self.log_path.read_text(errors='replace')}")
        assert self.proc.returncode == 0, \
            f"proxy exited {self.proc.returncode}; log:\n{self.log_path.read_text(errors='replace')}"
        check_recording(self.db)


@pytest.fixture
def proxy(containerd: harness.Containerd, sock_dir: pathlib.Path, cli_cmd: list[str]) -> Iterator[ProxyRun]:
    """A recording `cri-proxy run` subprocess in front of containerd. A test ends with
    `proxy.finish()` (or `both.finish()`), which checks the exit and the recording; the
    teardown only stops the proxy, so a test that skips or fails is reported as just that."""
    sock = sock_dir / "proxy.sock"
    log_path = sock_dir / "proxy.log"
    db = sock_dir / "calls.db"
    argv = [*cli_cmd, "run", "--listen", f"unix://{sock}", "--runtime-endpoint", f"unix://{containerd.sock}",
            "--db", str(db)]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    run = ProxyRun(sock, proc, log_path, db)
    try:
        harness.wait_for_socket(sock, 45, proc)  # a start takes 1-2 s; 15 s was not enough at load 18
        yield run
    finally:
        run.stop()


def check_recording(db: pathlib.Path) -> None:
    """Every call the proxy relayed to containerd was recorded whole: nothing lost, a status for
    each completed call, every CRI message decoded, the file intact."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        recorded, lost = conn.execute("SELECT calls_recorded, calls_lost FROM sessions").fetchone()
        assert lost == 0 and recorded == conn.execute("SELECT count(*) FROM calls").fetchone()[0] > 0
        twice = conn.execute("SELECT count(*) FROM (SELECT 1 FROM calls GROUP BY session_id, conn_id, stream_id "
                             "HAVING count(*) > 1)")
        assert twice.fetchone()[0] == 0  # each call once
        unfinished = conn.execute("SELECT count(*) FROM calls WHERE outcome = 'completed' AND status_code IS NULL")
        assert unfinished.fetchone()[0] == 0
        undecoded = conn.execute(
            "SELECT c.method, p.json FROM calls c JOIN messages m ON m.call_id = c.id JOIN payloads p "
            "ON p.id = m.payload_id WHERE c.path LIKE '/runtime.%' AND (p.json IS NULL OR p.json LIKE '{\"_error\"%')")
        assert undecoded.fetchall() == []
    finally:
        conn.close()


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
    """What one unary call returned: the raw response bytes or the error, and the metadata."""

    code: grpc.StatusCode
    details: str | None
    raw: bytes | None
    initial: tuple[tuple[str, str | bytes], ...] = ()
    trailing: tuple[tuple[str, str | bytes], ...] = ()

    @property
    def status(self) -> tuple[object, ...]:
        """What must be identical both ways: code, details and the response's metadata."""
        return self.code, self.details, self.initial, self.trailing


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((item[0], item[1]) for item in metadata or ())


def serialize(msg: Message) -> bytes:
    return msg.SerializeToString()


class Both:
    """Channels to containerd directly and through the proxy; calls one CRI method both ways."""

    def __init__(self, api: Api, direct: pathlib.Path, via: ProxyRun) -> None:
        self.api = api
        self.proxy = via
        self.direct = grpc.insecure_channel(f"unix://{direct}", options=harness.CHANNEL_OPTIONS)
        self.via = grpc.insecure_channel(f"unix://{via.sock}", options=harness.CHANNEL_OPTIONS)

    def close(self) -> None:
        self.direct.close()
        self.via.close()

    def finish(self) -> None:
        """The test's last step: close the channels, then `ProxyRun.finish` (exit 0, recording whole)."""
        self.close()
        self.proxy.finish()

    def _method(self, name: str) -> tuple[str, type[Message]]:
        for service in self.api.pb.DESCRIPTOR.services_by_name.values():
            method = service.methods_by_name.get(name)
            if method is not None:
                return f"/{service.full_name}/{name}", getattr(self.api.pb, method.output_type.name)
        raise KeyError(name)

    def method_path(self, name: str) -> str:
        return self._method(name)[0]

    def outcome(self, channel: grpc.Channel, name: str, request: Message, timeout: float = 30) -> Outcome:
        path, _ = self._method(name)
        call = channel.unary_unary(path, request_serializer=serialize, response_deserializer=None)
        try:
            raw, done = call.with_call(request, timeout=timeout)
        except grpc.RpcError as err:
            failed: Any = err  # a grpc.Call as well as an RpcError
            return Outcome(failed.code(), failed.details(), None,
                           _pairs(failed.initial_metadata()), _pairs(failed.trailing_metadata()))
        return Outcome(grpc.StatusCode.OK, None, raw, _pairs(done.initial_metadata()),
                       _pairs(done.trailing_metadata()))

    def parse(self, name: str, outcome: Outcome) -> Any:
        assert outcome.code == grpc.StatusCode.OK, f"{name}: {outcome.code} {outcome.details}"
        _, response_type = self._method(name)
        return response_type.FromString(outcome.raw or b"")

    def call(self, channel: grpc.Channel, name: str, request: Message, timeout: float = 30) -> Any:
        return self.parse(name, self.outcome(channel, name, request, timeout))

    def read(self, name: str, request: Message, normalize: Callable[[Any], None] | None = None) -> Any:
        """Make a read-only call both ways back to back; the answers must be equal."""
        direct_outcome = self.outcome(self.direct, name, request)
        via_outcome = self.outcome(self.via, name, request)
        direct, via = self.parse(name, direct_outcome), self.parse(name, via_outcome)
        assert via_outcome.status == direct_outcome.status, name
        for response in (direct, via):
            if normalize is not None:
                normalize(response)
            sort_lists(response)
        assert text_format.MessageToString(via) == text_format.MessageToString(direct), name
        assert via == direct, name
        return via

    def fails_alike(self, name: str, request: Message) -> Outcome:
        """Make a call both ways that must fail; code, details and metadata must be identical."""
        direct = self.outcome(self.direct, name, request)
        via = self.outcome(self.via, name, request)
        assert direct.code != grpc.StatusCode.OK, f"{name} unexpectedly succeeded"
        assert via.status == direct.status, name
        return via


@pytest.fixture
def both(api: Api, containerd: harness.Containerd, proxy: ProxyRun) -> Iterator[Both]:
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


# --- reading containerd's messages without its protos ------------------------------------


def proto_strings(raw: bytes) -> list[bytes]:
    """The length-delimited fields of one flat protobuf message: enough to read containerd's
    VersionResponse and namespace names without its .proto files."""
    found: list[bytes] = []
    pos = 0
    while pos < len(raw):
        key, pos = read_uvarint(raw, pos)
        wire_type = key & 7
        if wire_type == 2:
            length, pos = read_uvarint(raw, pos)
            found.append(raw[pos:pos + length])
            pos += length
        elif wire_type == 0:
            _, pos = read_uvarint(raw, pos)
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return found


def pod_config(pb: ModuleType, containerd: harness.Containerd, name: str, pair: str,
               host_network: bool = True) -> Message:
    """A pod in its own cgroup; host-network ones must not set a hostname (no UTS namespace)."""
    uid = uuid.uuid4().hex
    network = pb.NODE if host_network else pb.POD
    security = pb.LinuxSandboxSecurityContext(namespace_options=namespaces(pb, network))
    config: Message = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="cri-proxy-test", attempt=0),
        hostname="" if host_network else name,
        labels={"app": "cri-proxy-test", "pair": pair, "side": name.rsplit("-", 1)[-1]},
        annotations={"cri-proxy/test": name},
        log_directory=str(containerd.dir / "logs" / uid),
        linux=pb.LinuxPodSandboxConfig(cgroup_parent=f"{containerd.cgroup_parent}/pod{uid}",
                                       security_context=security),
    )
    return config


def container_config(pb: ModuleType, host_network: bool = True) -> Message:
    network = pb.NODE if host_network else pb.POD
    security = pb.LinuxContainerSecurityContext(namespace_options=namespaces(pb, network))
    config: Message = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
        image=pb.ImageSpec(image=harness.BUSYBOX_REF),
        command=["sleep", "3600"],
        labels={"app": "cri-proxy-test"},
        log_path="sleeper.log",
        linux=pb.LinuxContainerConfig(security_context=security),
    )
    return config


def namespaces(pb: ModuleType, network: int) -> Message:
    options: Message = pb.NamespaceOption(network=network, pid=pb.CONTAINER, ipc=pb.POD)
    return options
