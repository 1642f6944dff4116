"""The fake runtime's ExecSync interpreter, directly and over gRPC, and the streaming URLs."""

from __future__ import annotations

import pathlib
import re
import time

import grpc
import pytest

from cri_proxy.fakeruntime.execsync import ExecEnv, run_command
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import container_config, pod_config, run_pod, serve

pytestmark = pytest.mark.timeout(10)

ENV = ExecEnv(hostname="web", env={"A": "1"}, working_dir="/srv")


@pytest.mark.parametrize(
    "argv, stdout, stderr, code",
    [
        (["echo", "hello", "world"], b"hello world\n", b"", 0),
        (["/bin/echo", "-n", "x"], b"x", b"", 0),
        (["true"], b"", b"", 0),
        (["false"], b"", b"", 1),
        (["cat", "/etc/hostname"], b"web\n", b"", 0),
        (["cat", "/nope"], b"", b"cat: can't open '/nope': No such file or directory\n", 1),
        (["hostname"], b"web\n", b"", 0),
        (["pwd"], b"/srv\n", b"", 0),
        (["env"], b"A=1\n", b"", 0),
        (["sh", "-c", "exit 3"], b"", b"", 3),
        (["/bin/sh", "-c", "echo a; echo b && false || echo c; exit 4; echo never"], b"a\nb\nc\n", b"", 4),
        (["sh", "-c", "false && echo no"], b"", b"", 1),
        (["sh", "-c", "echo 'two words'"], b"two words\n", b"", 0),
        (["curl", "localhost"], b"", b"sh: curl: not found\n", 127),
        ([], b"", b"", 0),
    ],
)
async def test_builtin_commands(argv: list[str], stdout: bytes, stderr: bytes, code: int) -> None:
    got = await run_command(argv, ENV)
    assert (got.stdout, got.stderr, got.exit_code) == (stdout, stderr, code)


async def _running_container(rt: v1_grpc.RuntimeServiceStub) -> str:
    pod_id = await run_pod(rt, pod_config("probe"))
    req = v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config())
    ctr_id = (await rt.CreateContainer(req)).container_id
    await rt.StartContainer(v1.StartContainerRequest(container_id=ctr_id))
    return ctr_id


async def test_exec_sync_over_grpc(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        ctr_id = await _running_container(rt)
        got = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["cat", "/etc/hostname"], timeout=5))
        assert (got.stdout, got.exit_code) == (b"probe\n", 0)
        got = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["sh", "-c", "echo $X; exit 7"]))
        assert got.exit_code == 7
        got = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["env"]))
        assert got.stdout == b"GREETING=hello\n"
        got = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["nosuch"]))
        assert got.exit_code == 127 and b"not found" in got.stderr


async def test_exec_sync_timeout_is_honoured(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        ctr_id = await _running_container(rt)
        got = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["sleep", "0.05"], timeout=1))
        assert got.exit_code == 0
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["sleep", "30"], timeout=1))
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "timeout 1s exceeded" in (err.value.details() or "")
        assert time.monotonic() - started < 3


async def test_exec_needs_a_running_container(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        ctr_id = await _running_container(rt)
        await rt.StopContainer(v1.StopContainerRequest(container_id=ctr_id, timeout=1))
        for call in (
            rt.ExecSync(v1.ExecSyncRequest(container_id=ctr_id, cmd=["true"])),
            rt.Exec(v1.ExecRequest(container_id=ctr_id, cmd=["sh"], stdout=True)),
            rt.Attach(v1.AttachRequest(container_id=ctr_id, stdout=True)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "CONTAINER_EXITED" in (err.value.details() or "")


async def test_streaming_urls(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, streaming_port=41234) as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        ctr_id = await _running_container(rt)
        pod_id = (await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items[0].id
        urls = [
            (await rt.Exec(v1.ExecRequest(container_id=ctr_id, cmd=["sh"], stdout=True))).url,
            (await rt.Attach(v1.AttachRequest(container_id=ctr_id, stdout=True))).url,
            (await rt.PortForward(v1.PortForwardRequest(pod_sandbox_id=pod_id, port=[80]))).url,
        ]
        for kind, url in zip(("exec", "attach", "portforward"), urls):
            assert re.fullmatch(rf"http://127\.0\.0\.1:41234/{kind}/[\w-]+", url), url
        again = (await rt.Exec(v1.ExecRequest(container_id=ctr_id, cmd=["sh"], stdout=True))).url
        assert again != urls[0]  # tokens are single-use
