"""cri_proxy/proxy/lazybridge.py: the bridge starts only when asked, once, on its private socket
beside the listen socket, serves a v1 client before a v1alpha2 runtime, and leaves no folder."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest

from cri_proxy.bridge.options import BridgeOptions
from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.lazybridge import LazyBridge
from cri_proxy.proxy.prober import VersionProber

pytestmark = pytest.mark.timeout(60)


async def test_ready_starts_the_bridge_once_and_stop_removes_its_folder(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1alpha2")
    prober = VersionProber(sock_dir / "rt.sock", None, emulate_events=True)
    await prober.reprobe()
    lazy = LazyBridge(sock_dir, sock_dir / "rt.sock", None, BridgeOptions(), None, prober)
    try:
        assert lazy.bridge is None and not lazy.path.exists()  # nothing started until a connection needs it
        await asyncio.gather(lazy.ready(), lazy.ready())
        first = lazy.bridge
        await lazy.ready()
        assert first is not None and lazy.bridge is first and lazy.path.parent.parent == sock_dir
        async with grpc.aio.insecure_channel(f"unix://{lazy.path}") as channel:
            reply = await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())
        assert reply.runtime_api_version == "v1alpha2"  # translated by the bridge
        assert lazy.caller("unix:") is None  # a peer that is no relayed connection of ours
    finally:
        await lazy.stop()
        await prober.close()
        await runtime.stop(0)
    assert not lazy.folder.exists()
