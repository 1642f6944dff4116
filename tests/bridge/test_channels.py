"""A runtime upgraded or downgraded behind the bridge is picked up without restarting anything:
the bridge's channels tell the prober, and the same client channel keeps working after the
client's own retry."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.sink import MemorySink
from cri_proxy.model.upstream import UpstreamApis
from tests.helpers.bridge import KUBELET_OPTIONS, Client, probed_bridge

pytestmark = pytest.mark.timeout(60)


async def retry(client: Client, method: str, attempts: int = 60) -> object:
    """Like the kubelet: calls fail fast UNAVAILABLE while the runtime is away; try again."""
    for _ in range(attempts):
        try:
            return await client.call(method, timeout=2)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError(f"{method} still UNAVAILABLE")


@pytest.mark.parametrize("first,second", [("v1alpha2", "v1"), ("v1", "v1alpha2")])
async def test_runtime_restarted_speaking_another_version(sock_dir: pathlib.Path, first: str,
                                                          second: str) -> None:
    address = f"unix://{sock_dir}/rt.sock"
    runtime = await start_fake_runtime(address, first)  # type: ignore[arg-type]
    reported: list[UpstreamApis] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(lambda: runtime.stop(None))
        bridge = await stack.enter_async_context(
            probed_bridge(sock_dir, sock_dir / "rt.sock", sink=MemorySink(), on_change=reported.append))
        channel = grpc.aio.insecure_channel(bridge.address, options=KUBELET_OPTIONS)
        stack.push_async_callback(channel.close, None)
        client = Client(channel, "v1")
        assert (await client.call("Version")).runtime_api_version == first
        await runtime.stop(None)
        try:
            await client.call("Version", timeout=2)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        runtime = await start_fake_runtime(address, second)  # type: ignore[arg-type]
        version = await retry(client, "Version")
        assert version.runtime_api_version == second  # type: ignore[attr-defined]
        assert bridge.api_for("runtime") == second
        assert reported[0].runtime == (first,) and reported[-1].runtime == (second,)
        # the rest of the API works on the same channel, in the client's version
        cfg = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}
        pod = await client.call("RunPodSandbox", config=cfg)
        listed = await client.call("ListPodSandbox")
        assert [p.id for p in listed.items] == [pod.pod_sandbox_id]
        assert (await Client(channel, "v1alpha2").call("Version")).runtime_api_version == second


async def test_runtime_down_at_start_is_negotiated_when_it_comes(sock_dir: pathlib.Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        bridge = await stack.enter_async_context(probed_bridge(sock_dir, sock_dir / "rt.sock"))
        channel = grpc.aio.insecure_channel(bridge.address)
        stack.push_async_callback(channel.close, None)
        assert bridge.api_for("runtime") is None and not bridge.source.apis.known
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Client(channel, "v1").call("Version", timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1alpha2")
        stack.push_async_callback(runtime.stop, None)
        version = await retry(Client(channel, "v1"), "Version")
        assert version.runtime_api_version == "v1alpha2"  # type: ignore[attr-defined]
        assert bridge.api_for("runtime") == "v1alpha2"
