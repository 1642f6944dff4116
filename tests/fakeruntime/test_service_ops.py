"""cri_proxy/fakeruntime/service_ops.py: the fake runtime's Version, Status and RuntimeConfig over real gRPC."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.fakeruntime import serve

pytestmark = pytest.mark.timeout(10)


async def test_status_runtime_config_and_version(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, cgroup_driver="cgroupfs") as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        version = await rt.Version(v1.VersionRequest(version="0.1.0"))
        assert (version.runtime_name, version.runtime_api_version) == ("cri-proxy-fake", "v1")
        status = await rt.Status(v1.StatusRequest(verbose=True))
        assert {(c.type, c.status) for c in status.status.conditions} == {("RuntimeReady", True), ("NetworkReady", True)}
        assert "cgroupfs" in status.info["config"]
        config = await rt.RuntimeConfig(v1.RuntimeConfigRequest())
        assert config.linux.cgroup_driver == v1.CGROUPFS
        await rt.UpdateRuntimeConfig(v1.UpdateRuntimeConfigRequest(
            runtime_config=v1.RuntimeConfig(network_config=v1.NetworkConfig(pod_cidr="10.88.0.0/16"))))
        assert "10.88.0.0/16" in (await rt.Status(v1.StatusRequest(verbose=True))).info["config"]
    async with serve(sock_dir) as (_, ch):
        config = await v1_grpc.RuntimeServiceStub(ch).RuntimeConfig(v1.RuntimeConfigRequest())
        assert config.linux.cgroup_driver == v1.SYSTEMD
