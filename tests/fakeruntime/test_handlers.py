"""cri_proxy/fakeruntime/handlers.py: which versions are served, v1alpha2 through the v1 code,
and requests that do not parse, over real gRPC."""

from __future__ import annotations

import pathlib

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as a2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2_grpc as a2_grpc
from tests.helpers.fakeruntime import container_config, pod_config, run_pod, serve

pytestmark = pytest.mark.timeout(10)


async def test_v1_only_rejects_v1alpha2(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1") as (_, ch):
        assert (await v1_grpc.RuntimeServiceStub(ch).Version(v1.VersionRequest())).runtime_api_version == "v1"
        for call in (
            a2_grpc.RuntimeServiceStub(ch).Version(a2.VersionRequest()),
            a2_grpc.ImageServiceStub(ch).ImageFsInfo(a2.ImageFsInfoRequest()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_v1alpha2_only_rejects_v1(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "v1alpha2") as (_, ch):
        assert (await a2_grpc.ImageServiceStub(ch).ImageFsInfo(a2.ImageFsInfoRequest())).image_filesystems
        for call in (
            v1_grpc.RuntimeServiceStub(ch).Version(v1.VersionRequest()),
            v1_grpc.ImageServiceStub(ch).ImageFsInfo(v1.ImageFsInfoRequest()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_both_versions_share_state_and_v1alpha2_drops_v1_fields(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "both") as (_, ch):
        rt = v1_grpc.RuntimeServiceStub(ch)
        pod_id = await run_pod(rt, pod_config())
        await rt.CreateContainer(v1.CreateContainerRequest(pod_sandbox_id=pod_id, config=container_config()))
        old = a2_grpc.RuntimeServiceStub(ch)
        assert [p.id for p in (await old.ListPodSandbox(a2.ListPodSandboxRequest())).items] == [pod_id]
        assert (await old.Version(a2.VersionRequest())).runtime_api_version == "v1alpha2"
        # Read v1alpha2 replies with the v1 type: fields only v1 has must be absent.
        raw = ch.unary_unary(
            "/runtime.v1alpha2.RuntimeService/PodSandboxStatus",
            request_serializer=v1.PodSandboxStatusRequest.SerializeToString,
            response_deserializer=v1.PodSandboxStatusResponse.FromString,
        )
        got = await raw(v1.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert got.status.id == pod_id and not got.containers_statuses and got.timestamp == 0
        new = await rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
        assert len(new.containers_statuses) == 1 and new.timestamp > 0
        # v1-only methods do not exist under runtime.v1alpha2, even in "both" mode.
        v1_only = ch.unary_unary(
            "/runtime.v1alpha2.RuntimeService/RuntimeConfig",
            request_serializer=v1.RuntimeConfigRequest.SerializeToString,
            response_deserializer=v1.RuntimeConfigResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await v1_only(v1.RuntimeConfigRequest())
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_undecodable_requests_are_internal(sock_dir: pathlib.Path) -> None:
    async with serve(sock_dir, "both") as (server, ch):
        pod = server.state.run_pod(pod_config())
        cfg = container_config()
        cfg.envs.append(v1.KeyValue(key="RAW", value=b"\xff\xfe"))
        req = v1.CreateContainerRequest(pod_sandbox_id=pod.id, config=cfg)
        # v1 carries env values as bytes: anything goes.
        ctr_id = (await v1_grpc.RuntimeServiceStub(ch).CreateContainer(req)).container_id
        assert server.state.containers[ctr_id].config.envs[1].value == b"\xff\xfe"
        # v1alpha2 has them as strings: invalid UTF-8 does not parse.
        old = ch.unary_unary(
            "/runtime.v1alpha2.RuntimeService/CreateContainer",
            request_serializer=v1.CreateContainerRequest.SerializeToString,
            response_deserializer=v1.CreateContainerResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await old(req)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "error unmarshalling request" in (err.value.details() or "")
        garbage = ch.unary_unary("/runtime.v1.RuntimeService/Version", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await garbage(b"\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.INTERNAL
