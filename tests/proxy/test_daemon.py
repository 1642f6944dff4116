"""`cri-proxy run` as a node daemon: start-up checks, signals, dead runtimes and bad clients."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from hyperframe.frame import PingFrame, SettingsFrame

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.h2.frames import PREFACE
from tests.conftest import ROOT
from tests.helpers.bridge import KUBELET_OPTIONS, Client
from tests.helpers.backend import OPTIONS, channel, start_echo, unary
from tests.helpers.proxyproc import ProxyProcess, socket_answers
from tests.helpers.stall import StallingFront

pytestmark = pytest.mark.timeout(60)

# The kubelet re-dials from 100 ms; grpcio's min_reconnect_backoff_ms would also shorten the time a
# connection has to receive SETTINGS, so it is left alone.
FAST_REDIAL = OPTIONS + [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cri_proxy", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
async def backend(sock_dir: pathlib.Path) -> AsyncIterator[pathlib.Path]:
    server, _ = await start_echo(f"unix://{sock_dir}/up.sock")
    yield sock_dir / "up.sock"
    await server.stop(0)


@pytest.fixture
def backend_process(sock_dir: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_backend_process(sock_dir / "up.sock")
    yield proc
    proc.kill()
    proc.wait()


def start_backend_process(path: pathlib.Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.backend", f"unix://{path}"], cwd=ROOT)
    deadline = time.monotonic() + 15
    while not socket_answers(path):
        assert time.monotonic() < deadline and proc.poll() is None, "the echo backend did not start"
        time.sleep(0.02)
    return proc


async def test_stale_socket_is_replaced(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_dir / "p.sock"))
    stale.close()  # the file stays, nobody listens: what a crashed proxy leaves
    proxy = await ProxyProcess(sock_dir / "p.sock", backend).astart()
    try:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            assert await unary(ch, "/test.Echo/Unary")(b"hi") == b"hi"
    finally:
        assert await proxy.astop() == 0
    assert "replaced the stale socket file" in proxy.log()
    assert not (sock_dir / "p.sock").exists()


def test_live_socket_is_refused(sock_dir: pathlib.Path) -> None:
    upstream = socket.socket(socket.AF_UNIX)
    upstream.bind(str(sock_dir / "up.sock"))
    upstream.listen()
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(sock_dir / "p.sock"))
    live.listen()
    try:
        result = cli("run", "--listen", f"unix://{sock_dir}/p.sock", "--runtime-endpoint", f"unix://{sock_dir}/up.sock")
    finally:
        live.close()
        upstream.close()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"cri-proxy: error: listen socket {sock_dir}/p.sock is live: another cri-proxy (or another server) "
        "is serving it; stop that one first")


async def test_socket_mode_and_group(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    gid = os.getgid()
    async with ProxyProcess(sock_dir / "p.sock", backend, "--socket-mode", "0600", "--socket-group", str(gid)):
        info = (sock_dir / "p.sock").stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_gid == gid
    async with ProxyProcess(sock_dir / "q.sock", backend) as proxy:
        assert stat.S_IMODE((sock_dir / "q.sock").stat().st_mode) == 0o660
        # The socket answers as soon as it listens; the line saying so is logged just after.
        await proxy.await_log(f"listening on unix://{sock_dir}/q.sock (mode 0660), forwarding to unix://{backend}")


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "No such option: --bogus"),
    (["--listen", "unix:///tmp/x.sock"], "Missing option '--runtime-endpoint'"),
    (["--listen", "tcp://1.2.3.4:5", "--runtime-endpoint", "unix:///tmp/r.sock"],
     "--listen 'tcp://1.2.3.4:5': only unix:// sockets are supported, not tcp://"),
    (["--listen", "unix:///tmp/x.sock", "--runtime-endpoint", "unix:///nonexistent/containerd.sock"],
     "runtime endpoint unix:///nonexistent/containerd.sock: no such socket; is the runtime running?"),
    (["--listen", "unix:///tmp/x.sock", "--runtime-endpoint", "UP", "--socket-mode", "rw"],
     "'rw' is not an octal mode such as 0660"),
    (["--listen", "unix:///proc/nope/x.sock", "--runtime-endpoint", "UP"], "cannot create the folder /proc/nope"),
    (["--listen", "unix:///tmp/x.sock", "--runtime-endpoint", "UP", "--socket-group", "no-such-group-x"],
     "--socket-group 'no-such-group-x': no such group"),
    (["--listen", "unix:///tmp/x.sock", "--runtime-endpoint", "UP", "--log-level", "loud"],
     "must be one of debug, info, warning, error"),
])
def test_bad_input_gives_one_clear_line(sock_dir: pathlib.Path, args: list[str], message: str) -> None:
    upstream = socket.socket(socket.AF_UNIX)
    upstream.bind(str(sock_dir / "up.sock"))
    upstream.listen()
    args = [a.replace("UP", f"unix://{sock_dir}/up.sock") if a == "UP" else a for a in args]
    args = [a.replace("/tmp/x.sock", f"{sock_dir}/x.sock") for a in args]
    try:
        result = cli("run", *args)
    finally:
        upstream.close()
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 4


async def test_sigterm_lets_open_calls_finish_then_exits_0(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    proxy = await ProxyProcess(sock_dir / "p.sock", backend).astart()
    async with channel(f"unix://{sock_dir}/p.sock") as ch:
        assert await unary(ch, "/test.Echo/Unary")(b"warm") == b"warm"
        call = unary(ch, "/test.Echo/Sleep")(b"700")
        await asyncio.sleep(0.2)
        proxy.signal()
        assert await call == b"slept 700"  # the call in flight finished
        started = time.monotonic()
        code = await proxy.astop(20.0, False)
    assert code == 0 and time.monotonic() - started < 5
    assert not (sock_dir / "p.sock").exists()
    assert "SIGTERM: stopping" in proxy.log() and "stopped" in proxy.log()


async def test_grace_period_bounds_the_wait(sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    proxy = await ProxyProcess(sock_dir / "p.sock", backend, "--grace-period", "0.5").astart()
    async with channel(f"unix://{sock_dir}/p.sock") as ch:
        call = unary(ch, "/test.Echo/Hang")(b"")
        await asyncio.sleep(0.2)
        started = time.monotonic()
        proxy.signal()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await proxy.astop(20.0, False) == 0
    assert time.monotonic() - started < 3
    assert "1 call(s) still open after the grace period" in proxy.log()


async def test_dead_runtime_fails_fast_and_a_restarted_one_is_used(
        sock_dir: pathlib.Path, backend_process: subprocess.Popen[bytes]) -> None:
    async with ProxyProcess(sock_dir / "p.sock", sock_dir / "up.sock") as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=FAST_REDIAL) as ch:
            assert await unary(ch, "/test.Echo/Unary")(b"1") == b"1"
            backend_process.kill()
            backend_process.wait()
            await asyncio.sleep(0.2)
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await unary(ch, "/test.Echo/Unary")(b"2", timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - started < 1.0  # fails fast, like a dead runtime
            restarted = start_backend_process(sock_dir / "up.sock")
            try:
                for _ in range(50):  # the client re-dials on its own backoff; the proxy needs no restart
                    try:
                        assert await unary(ch, "/test.Echo/Unary")(b"3") == b"3"
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail("the restarted runtime was never reached through the proxy")
            finally:
                restarted.kill()
                restarted.wait()
    log = proxy.log()
    assert log.count("unreachable") == 1  # one line for the outage, not one per re-dial
    assert "reachable again" in log


async def test_garbage_and_vanishing_clients_do_not_disturb_others(
        sock_dir: pathlib.Path, backend: pathlib.Path) -> None:
    async with ProxyProcess(sock_dir / "p.sock", backend) as proxy:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            hello = unary(ch, "/test.Echo/Unary")
            assert await hello(b"before") == b"before"
            reader, writer = await asyncio.open_unix_connection(str(sock_dir / "p.sock"))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
            await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the proxy closed the connection
            assert reader.at_eof()
            writer.close()
            # a client killed in the middle of a call
            victim = subprocess.Popen([sys.executable, "-c", (
                "import grpc\n"
                f"ch=grpc.insecure_channel('unix://{sock_dir}/p.sock')\n"
                "grpc.channel_ready_future(ch).result(timeout=20)\n"
                "print('calling', flush=True)\n"
                "ch.unary_unary('/test.Echo/Hang')(b'', timeout=60)\n")], stdout=subprocess.PIPE)
            assert victim.stdout is not None
            assert await asyncio.to_thread(victim.stdout.readline) == b"calling\n"
            await asyncio.sleep(0.5)
            victim.kill()
            victim.wait()
            await asyncio.sleep(0.3)
            assert await hello(b"after") == b"after"
    log = proxy.log()
    assert "client did not open with the HTTP/2 preface (first bytes b'GET / HTTP/1.1" in log
    assert "client went away with 1 call(s) open" in log


async def test_upstream_dying_mid_stream(sock_dir: pathlib.Path, backend_process: subprocess.Popen[bytes]) -> None:
    async with ProxyProcess(sock_dir / "p.sock", sock_dir / "up.sock") as proxy:
        async with channel(f"unix://{sock_dir}/p.sock") as ch:
            stream = ch.unary_stream("/test.Echo/SlowStream")(b"1000")
            got = [await stream.read() for _ in range(3)]
            assert got == [b"tick 0", b"tick 1", b"tick 2"]
            backend_process.kill()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while True:
                    await stream.read()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        restarted = start_backend_process(sock_dir / "up.sock")
        try:
            async with channel(f"unix://{sock_dir}/p.sock") as ch:
                # wait_for_ready: grpcio shares subchannels between channels, and the first one's
                # re-dial while the backend was down left it in a backoff the new channel inherits
                assert await unary(ch, "/test.Echo/Unary")(b"again", wait_for_ready=True, timeout=10) == b"again"
        finally:
            restarted.kill()
            restarted.wait()
    assert re.search(r"upstream unix://\S+ went away \(.+\) with 1 call\(s\) open; closing the client connection",
                     proxy.log())


async def test_a_runtime_swapped_in_place_is_asked_again(sock_dir: pathlib.Path) -> None:
    """Issue 11.5: a runtime replaced without an outage (the new one listens before the next dial)
    was never asked again, and every v1 call failed UNIMPLEMENTED from then on."""
    old = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1")
    new = None
    try:
        async with ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock") as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=KUBELET_OPTIONS) as ch:
                client = Client(ch, "v1")
                assert (await client.call("Version")).runtime_api_version == "v1"
                # the new runtime is up before the old one stops, and takes over its socket path the
                # moment the old one is gone (grpc removes a unix socket's file as it stops), before
                # the client's next dial: the proxy sees connections close, never a failed connect
                new = await start_fake_runtime(f"unix://{sock_dir}/new.sock", "v1alpha2")
                await old.server.stop(0)
                os.rename(sock_dir / "new.sock", sock_dir / "rt.sock")
                await proxy.await_log("the runtime speaks CRI v1alpha2")
                for _ in range(3):
                    assert (await client.call("Version")).runtime_api_version == "v1alpha2"
                cfg = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}
                pod = await client.call("RunPodSandbox", config=cfg)
                assert [p.id for p in (await client.call("ListPodSandbox")).items] == [pod.pod_sandbox_id]
                assert list(new.state.pods) == [pod.pod_sandbox_id]
    finally:
        await old.stop(0)
        if new is not None:
            await new.stop(0)
    log = proxy.log()
    assert "unreachable" not in log  # no failed connect told the proxy
    assert "translating CRI v1 -> v1alpha2 in the relay" in log  # translated: v1 calls, a v1alpha2 runtime


async def test_a_hung_runtime_does_not_hold_new_connections(sock_dir: pathlib.Path) -> None:
    """Issue 11.7: each new connection first re-probed a hung runtime (2 x 2 s) under one lock, so
    five simultaneous connections reached it one after another over 8-24 s."""
    hung = await StallingFront(sock_dir / "rt.sock").start()
    try:
        async with ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock") as proxy:
            assert "gave no answer" in proxy.log()  # at start: still listening, on the default route
            marks = [b"client-%d" % n for n in range(5)]
            started = time.monotonic()
            clients = [await asyncio.open_unix_connection(str(sock_dir / "p.sock")) for _ in marks]
            for (_, writer), mark in zip(clients, marks, strict=True):
                writer.write(PREFACE + SettingsFrame(0).serialize() + PingFrame(0, opaque_data=mark).serialize())
            arrived: dict[bytes, float] = {}
            while len(arrived) < len(marks):
                seen_now = [(c, m) for c in hung.connections for m in marks if m in c.received]
                arrived.update((m, c.accepted) for c, m in seen_now if m not in arrived)
                if len(arrived) < len(marks):
                    await asyncio.wait_for(hung.any_change(), 10)
            assert max(arrived.values()) - started < 0.5, arrived  # each connected upstream at once
            for _, writer in clients:
                writer.close()
    finally:
        await hung.close()


async def test_a_connection_routed_by_an_old_answer_is_drained_when_it_changes(sock_dir: pathlib.Path) -> None:
    """The window issue 11.5 leaves: a connection whose first call came after the runtime changed
    but before the probe answered is routed by the old answer; the new answer drains it."""
    old = await start_fake_runtime(f"unix://{sock_dir}/old.sock", "v1")
    new = await start_fake_runtime(f"unix://{sock_dir}/new.sock", "v1alpha2")
    front = await StallingFront(sock_dir / "rt.sock", sock_dir / "old.sock").start()
    try:
        async with (ProxyProcess(sock_dir / "p.sock", sock_dir / "rt.sock") as proxy,
                    grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=KUBELET_OPTIONS) as routed):
            client = Client(routed, "v1")
            assert (await client.call("Version")).runtime_api_version == "v1"  # direct, to the old one
            front.backend = sock_dir / "new.sock"  # new connections reach the new runtime, this one the old
            # another connection comes and goes: its close asks the prober again
            seen = len(front.connections)
            _, writer = await asyncio.open_unix_connection(str(sock_dir / "p.sock"))
            writer.write(PREFACE + SettingsFrame(0).serialize())
            while not any(c.received for c in front.connections[seen:]):  # relayed upstream
                await asyncio.wait_for(front.any_change(), 10)
            writer.close()
            await proxy.await_log("draining 1 open connection(s)")
            assert (await client.call("Version")).runtime_api_version == "v1alpha2"  # re-dialled, bridged
    finally:
        await front.close()
        await old.stop(0)
        await new.stop(0)
