"""A runtime upgraded or downgraded behind the bridge is picked up without restarting anything:
the same client channel keeps working after the client's own retry."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest

from cri_proxy.bridge import Bridge, BridgeOptions
from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.sink import MemorySink
from tests.helpers.bridge import KUBELET_OPTIONS, Client

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
    reported: list[tuple[str, str | None]] = []
    bridge = Bridge(sock_dir / "br.sock", sock_dir / "rt.sock", None, sink=MemorySink(),
                    options=BridgeOptions(), on_negotiated=lambda s, v: reported.append((s, v)))
    await bridge.start()
    channel = grpc.aio.insecure_channel(bridge.address, options=KUBELET_OPTIONS)
    try:
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
        assert bridge.negotiated["runtime"] == second
        assert reported[0] == ("runtime", first) and reported[-1] == ("runtime", second)
        # the rest of the API works on the same channel, in the client's version
        cfg = {"metadata": {"name": "p", "namespace": "n", "uid": "u"}}
        pod = await client.call("RunPodSandbox", config=cfg)
        listed = await client.call("ListPodSandbox")
        assert [p.id for p in listed.items] == [pod.pod_sandbox_id]
        assert (await Client(channel, "v1alpha2").call("Version")).runtime_api_version == second
    finally:
        await channel.close(None)
        await bridge.stop(None)
        await runtime.stop(None)


async def test_runtime_down_at_start_is_negotiated_when_it_comes(sock_dir: pathlib.Path) -> None:
    bridge = Bridge(sock_dir / "br.sock", sock_dir / "rt.sock", None, options=BridgeOptions())
    await bridge.start()
    runtime = None
    channel = grpc.aio.insecure_channel(bridge.address)
    try:
        assert bridge.negotiated["runtime"] is None
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Client(channel, "v1").call("Version", timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1alpha2")
        version = await retry(Client(channel, "v1"), "Version")
        assert version.runtime_api_version == "v1alpha2"  # type: ignore[attr-defined]
        assert bridge.negotiated["runtime"] == "v1alpha2"
    finally:
        await channel.close(None)
        await bridge.stop(None)
        if runtime is not None:
            await runtime.stop(None)
