"""cri_proxy/bridge/answers.py, through a real bridge before a real stand-in runtime: the replies
the bridge gives itself for what a v1alpha2 runtime lacks, and the checks that refuse or warn
about a v1 request it would break or silently lose."""

from __future__ import annotations

import pathlib
from typing import Any

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from tests.helpers.bridge import Client, bridged, recorded

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("driver,expected", [("systemd", v1.SYSTEMD), ("cgroupfs", v1.CGROUPFS)])
async def test_runtime_config_answered_from_option(sock_dir: pathlib.Path, driver: str, expected: int) -> None:
    async with bridged(sock_dir, "v1alpha2", cgroup_driver=driver) as (_, _bridge, sink, channel):
        reply = await Client(channel, "v1").call("RuntimeConfig")
        assert reply.linux.cgroup_driver == expected
        assert any("cgroup driver" in n for n in (await recorded(sink, 1))[-1].notes)


async def test_runtime_config_without_option_is_unimplemented(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (_, _bridge, _sink, channel):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Client(channel, "v1").call("RuntimeConfig")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "v1alpha2" in (err.value.details() or "")


async def test_other_v1_only_rpcs_unimplemented_naming_the_version(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (_, _bridge, _sink, channel):
        for method in ("CheckpointContainer", "ListMetricDescriptors", "UpdatePodSandboxResources"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await Client(channel, "v1").call(method)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert err.value.details() == (
                f"{method} is not available: the runtime speaks CRI v1alpha2, which lacks it")


# --- nothing silent ---------------------------------------------------------------------------

async def _pod(client: Client) -> tuple[str, dict[str, Any]]:
    cfg = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}
    return (await client.call("RunPodSandbox", config=cfg)).pod_sandbox_id, cfg


async def test_env_value_not_utf8_refused_naming_the_variable(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (rt, _bridge, sink, channel):
        client = Client(channel, "v1")
        pod_id, cfg = await _pod(client)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.call("CreateContainer", pod_sandbox_id=pod_id, sandbox_config=cfg, config={
                "metadata": {"name": "c"}, "image": {"image": "docker.io/library/busybox:latest"},
                "envs": [{"key": "FINE", "value": "b2s="}, {"key": "BINARY", "value": "/w=="}]})
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "BINARY" in (err.value.details() or "") and "FINE" not in (err.value.details() or "")
        assert not rt.state.containers
        assert any(n.startswith("refused") for n in (await recorded(sink, 2))[-1].notes)


async def test_v1_only_fields_forwarded_with_warning(sock_dir: pathlib.Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async with bridged(sock_dir, "v1alpha2") as (rt, _bridge, sink, channel):
        client = Client(channel, "v1")
        pod_id, cfg = await _pod(client)
        reply = await client.call("CreateContainer", pod_sandbox_id=pod_id, sandbox_config=cfg, config={
            "metadata": {"name": "c"}, "image": {"image": "docker.io/library/busybox:latest"},
            "mounts": [{"container_path": "/data", "host_path": "/srv", "recursive_read_only": True}],
            "stop_signal": "SIGUSR1"})
        assert reply.container_id in rt.state.containers
        await recorded(sink, 2)
    fields = "config.mounts[0].recursive_read_only, config.stop_signal"
    assert any(fields in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert f"v1-only fields ignored by the v1alpha2 runtime: {fields}" in sink.calls[-1].notes


async def test_strict_refuses_security_relevant_v1_only_fields(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2", strict=True) as (rt, _bridge, _sink, channel):
        client = Client(channel, "v1")
        pod_id, cfg = await _pod(client)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.call("CreateContainer", pod_sandbox_id=pod_id, sandbox_config=cfg, config={
                "metadata": {"name": "c"}, "image": {"image": "docker.io/library/busybox:latest"},
                "linux": {"security_context": {"supplemental_groups_policy": "Strict"}}})
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "config.linux.security_context.supplemental_groups_policy" in (err.value.details() or "")
        assert not rt.state.containers
        # a v1-only field that is not security-relevant still goes through under strict
        await client.call("ImageStatus", image={"image": "docker.io/library/busybox:latest",
                                                 "user_specified_image": "busybox"})


async def test_unparsable_checked_request_is_forwarded_for_the_runtime_to_judge(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (_, _bridge, sink, channel):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await channel.unary_unary("/runtime.v1.RuntimeService/CreateContainer")(b"\x0a\xff")
        assert err.value.code() == grpc.StatusCode.INTERNAL  # the stand-in's answer, as grpc-go's
        assert any("forwarded unchecked" in n for n in (await recorded(sink, 1))[0].notes)
