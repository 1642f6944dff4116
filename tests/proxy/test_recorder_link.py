"""`cri-proxy run --db`: every call through the real proxy process lands in SQLite, once, intact."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import subprocess
import sys
import time

import grpc
import pytest

from cri_proxy.messages.decode import METHODS
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as v1alpha2_grpc
from cri_proxy.proxy.recorder_out import send_every
from cri_proxy.store import db
from cri_proxy.store.readonly import open_readonly
from tests.helpers.backend import channel, start_echo, unary
from tests.helpers.baddb import BAD_DATABASES, bad_database
from tests.helpers.calls import read_rows as rows
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess, recorder_pid
from tests.helpers.scrape import get, samples, total

pytestmark = pytest.mark.timeout(90)

PASSWORD = b"hunter2-registry-SECRET"
ENV_VALUE = b"env-value-SECRET-42"


async def every_rpc_with_an_empty_request(channel: grpc.aio.Channel) -> dict[str, str]:
    """Calls each RPC of both versions once; returns path -> status name as the client saw it."""
    seen = {}
    for path, types in METHODS.items():
        try:
            if types.server_streaming:
                stream = channel.unary_stream(path)(b"", timeout=0.5)
                async for _ in stream:
                    pass
            else:
                await channel.unary_unary(path)(b"", timeout=5)
            seen[path] = "OK"
        except grpc.aio.AioRpcError as exc:
            seen[path] = exc.code().name
    return seen


async def lifecycle_with_secrets(channel: grpc.aio.Channel) -> None:
    rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
    await img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image="docker.io/library/redis:7"),
                                            auth=v1.AuthConfig(username="bob", password=PASSWORD.decode())))
    config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="web", namespace="shop", uid="u1"))
    pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))
    created = await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="redis"),
                                  image=v1.ImageSpec(image="docker.io/library/redis:7"),
                                  envs=[v1.KeyValue(key="REDIS_PASSWORD", value=ENV_VALUE)])))
    await rt.StartContainer(v1.StartContainerRequest(container_id=created.container_id))
    await v1alpha2_grpc.RuntimeServiceStub(channel).Version(v1alpha2.VersionRequest())


async def test_every_call_is_recorded_once_and_secrets_nowhere(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    proxy = await ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)).astart()
    async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
        seen = await every_rpc_with_an_empty_request(channel)
        await lifecycle_with_secrets(channel)
    assert await proxy.astop() == 0
    calls = rows(path, "SELECT path, status_name, outcome, duration_ms, request_count, redacted, pod_name FROM calls "
                       "ORDER BY id")
    recorded = {c[0]: c for c in calls[:len(seen)]}
    assert len(recorded) == len(seen) == 70  # every RPC of both versions, each exactly once
    for rpc_path, status in seen.items():
        if recorded[rpc_path][2] == "cancelled":  # a stream whose deadline one side enforced with a reset
            assert status == "DEADLINE_EXCEEDED", rpc_path
        else:
            assert recorded[rpc_path][1] == status, rpc_path
            assert recorded[rpc_path][2] == "completed" and recorded[rpc_path][3] is not None
    tail = [(c[0].rsplit("/", 1)[1], c[1], c[5], c[6]) for c in calls[len(seen):]]
    assert tail == [("PullImage", "OK", 1, None), ("RunPodSandbox", "OK", 0, "web"),
                    ("CreateContainer", "OK", 1, "web"), ("StartContainer", "OK", 0, None), ("Version", "OK", 0, None)]
    decoded = rows(path, "SELECT count(*), count(p.json) FROM messages m JOIN calls c ON c.id = m.call_id "
                         "JOIN payloads p ON p.id = m.payload_id WHERE c.path LIKE '/runtime.%'")
    assert decoded[0][0] > 70 and decoded[0][0] == decoded[0][1]  # every CRI message has its JSON view
    session = rows(path, "SELECT runtime_api, image_api, calls_recorded, calls_lost, ended_at IS NOT NULL FROM sessions")
    assert session == [("v1,v1alpha2", "v1,v1alpha2", len(calls), 0, 1)]  # it serves both, like containerd 1.6
    for file in sock_dir.glob("calls.db*"):
        data = file.read_bytes()
        assert PASSWORD not in data and ENV_VALUE not in data, file
    assert (path.stat().st_mode & 0o777) == 0o600


LOOP_LATE_S = 0.1  # how late the proxy's send timer may fire on a loaded CI machine


async def test_sigkill_under_load_loses_little_and_the_database_opens_clean(
        sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    proxy = await ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path), "--flush-interval", "0.05").astart()
    made = 0
    answered: list[tuple[float, int]] = []  # when each batch had its answers, and the calls made by then
    async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
        stub = v1_grpc.RuntimeServiceStub(channel)
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            await asyncio.gather(*(stub.ListContainers(v1.ListContainersRequest()) for _ in range(20)))
            made += 20
            answered.append((time.monotonic(), made))
        killed = time.monotonic()
        proxy.signal(signal.SIGKILL)
    assert await proxy.astop() == -signal.SIGKILL
    # The recorder process outlives the proxy: it records everything the proxy handed it, ends
    # the session row and exits.
    deadline = time.monotonic() + 20
    while not rows(path, "SELECT 1 FROM sessions WHERE ended_at IS NOT NULL") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    conn = open_readonly(path)
    try:
        assert db.integrity_check(conn) == ["ok"]
        recorded = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        ended, lost = conn.execute("SELECT ended_at, calls_lost FROM sessions").fetchone()
    finally:
        conn.close()
    assert ended is not None and lost == 0
    # Missing: at most what the proxy had not handed over yet, the chunks of its last send period
    # (a fifth of --flush-interval here), and of what its loop was late by on a loaded machine.
    # A batch of 20 takes about 5 ms here, so that is one or two batches, not a fixed count.
    handed_by = killed - send_every(0.05) - LOOP_LATE_S
    handed = max((calls for at, calls in answered if at < handed_by), default=0)
    assert handed <= recorded <= made, (made, recorded)
    assert handed >= made - 2000  # and that bound says something: the window is a small part of the 2 s


@pytest.mark.parametrize("fault", ["deleted", "read-only", "locked"])
async def test_database_faults_never_fail_cri_calls(sock_dir: pathlib.Path, runtime: pathlib.Path, fault: str) -> None:
    path = sock_dir / "calls.db"
    proxy = await ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)).astart()
    locker = None
    async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
        stub = v1_grpc.RuntimeServiceStub(channel)
        await stub.Version(v1.VersionRequest())
        if fault == "deleted":
            for file in sock_dir.glob("calls.db*"):
                file.unlink()
        elif fault == "read-only":
            path.chmod(0o400)
        else:
            locker = subprocess.Popen([sys.executable, "-c", (
                "import sqlite3,sys,time\n"
                f"c=sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(3)\n")],
                stdout=subprocess.PIPE)
            assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
        for _ in range(30):
            reply = await stub.ListPodSandbox(v1.ListPodSandboxRequest(), timeout=2)
            assert reply is not None
            await asyncio.sleep(0.05)
    if locker is not None:
        locker.wait()
    assert await proxy.astop() == 0
    assert "Traceback" not in proxy.log()
    if path.exists():
        conn = open_readonly(path)
        try:
            assert db.integrity_check(conn) == ["ok"]
        finally:
            conn.close()


HEAVY_EXTENSIONS = ("_sqlite3", "google/_upb", "google/protobuf/pyext/_message")


def heavy_extensions(pid: int) -> set[str]:
    maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
    return {name for name in HEAVY_EXTENSIONS if name in maps}


@pytest.mark.parametrize("record", [False, True, None], ids=["relay-only", "with-db", "metrics-only"])
async def test_the_relay_process_loads_neither_sqlite_nor_protobuf(
        sock_dir: pathlib.Path, runtime: pathlib.Path, record: bool | None) -> None:
    """Recording lives in the child: the relay process stays small, with or without --db, and
    with metrics but no --db (None: the recorder process runs without a writer)."""
    extra: tuple[str, ...] = ("--db", str(sock_dir / "calls.db")) if record else ()
    if record is None:
        extra = ("--metrics-listen", f"unix://{sock_dir}/m.sock")
    async with ProxyProcess(sock_dir / "p.sock", runtime, *extra) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())
        assert proxy.proc is not None
        assert heavy_extensions(proxy.proc.pid) == set()
        if record:  # the same check finds them where they belong
            assert "_sqlite3" in heavy_extensions(recorder_pid(proxy))
        if record is None:  # the recorder process runs (recorder_pid finds exactly one) and serves
            recorder_pid(proxy)
            assert (sock_dir / "m.sock").exists() and not (sock_dir / "calls.db").exists()
        assert await proxy.astop() == 0


@pytest.mark.parametrize("kind", BAD_DATABASES)
async def test_a_bad_database_at_start_never_takes_the_cri_away(
        sock_dir: pathlib.Path, runtime: pathlib.Path, kind: str) -> None:
    with bad_database(sock_dir, kind) as path:
        async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
                stub = v1_grpc.RuntimeServiceStub(channel)
                for _ in range(5):
                    assert (await stub.Version(v1.VersionRequest(), timeout=5)).runtime_name
                    assert await stub.ListPodSandbox(v1.ListPodSandboxRequest(), timeout=5) is not None
            assert await proxy.astop() == 0
    log = proxy.log()
    assert "Traceback" not in log and "Aborted" not in log
    said = [line for line in log.splitlines() if f"recording to {path} failed (" in line]
    assert len(said) == 1 and " ERROR " in said[0] and "retried every" in said[0], log
    assert "listening on" in log


async def scraped_bytes(address: str, calls: int, timeout: float = 20.0) -> tuple[float, float]:
    """Request and response bytes from /metrics, once it has counted `calls` finished calls."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = samples((await asyncio.to_thread(get, address, "/metrics"))[1])
        except OSError:  # not serving yet
            found = {}
        if total(found, "cri_proxy_calls_total") >= calls or time.monotonic() > deadline:
            return total(found, "cri_proxy_request_bytes_total"), total(found, "cri_proxy_response_bytes_total")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("record", [False, True], ids=["metrics-only", "with-db"])
async def test_message_bytes_are_counted_alike_with_or_without_the_bodies(sock_dir: pathlib.Path,
                                                                         record: bool) -> None:
    """Metrics only, the relay ships DATA frames as summaries (proxy.lean); with --db, whole.
    Both count exactly the message bytes the client and the server exchanged. (A queue large
    enough that the recorder never skims: a skimmed call's messages are not counted.)"""
    backend, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    listen = f"unix://{sock_dir}/m.sock"
    extra = ["--metrics-listen", listen, "--queue-mb", "1024"] + (["--db", str(sock_dir / "calls.db")] if record else [])
    try:
        async with ProxyProcess(sock_dir / "p.sock", sock_dir / "up.sock", *extra) as proxy:
            async with channel(f"unix://{sock_dir}/p.sock") as ch:
                big = await unary(ch, "/test.Echo/Big")(b"3000000")
                stream = [m async for m in ch.unary_stream("/test.Echo/ServerStream")(b"40")]
                asked = [b"a" * 70_000, b"", b"b" * 5]
                joined = await ch.stream_unary("/test.Echo/ClientStream")(iter(asked))
            sent = len(b"3000000") + len(b"40") + sum(map(len, asked))
            got = len(big) + sum(map(len, stream)) + len(joined)
            assert len(big) == 3_000_000 and len(stream) == 40
            assert await scraped_bytes(listen, 3) == (sent, got), proxy.log()
            assert await proxy.astop() == 0
    finally:
        await backend.stop(None)


async def test_a_proxy_that_does_not_wait_for_the_recorder_still_records_what_it_relays(
        sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    """`--recorder-start-wait 0`: the proxy listens before its recorder has opened the database
    (as it does when a migration outlasts the wait); the recorder's READY is read on the event
    loop, and the calls relayed meanwhile are recorded, none lost."""
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path), "--recorder-start-wait", "0") as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            stub = v1_grpc.RuntimeServiceStub(channel)
            for _ in range(20):
                assert (await stub.Version(v1.VersionRequest(), timeout=5)).runtime_name
        assert await proxy.astop() == 0
    log = proxy.log()
    assert "is still opening" in log and "forwarding starts now" in log, log
    assert "Traceback" not in log
    assert rows(path, "SELECT count(*) FROM calls WHERE method = 'Version'") == [(20,)]
    assert rows(path, "SELECT calls_recorded, calls_lost FROM sessions") == [(20, 0)]
