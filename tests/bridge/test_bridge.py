"""The bridge in front of the stand-in runtime: translation both ways, kubelet negotiation,
answers the proxy gives itself, checks, and recording. Real sockets, real servers."""

from __future__ import annotations

import contextlib
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.sink import MemorySink
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.model.upstream import UpstreamApis
from tests.helpers.bridge import KUBELET_OPTIONS, Client, bridged, probed_bridge, recorded

pytestmark = pytest.mark.timeout(60)





@contextlib.asynccontextmanager
async def direct(sock_dir: pathlib.Path, api: str) -> AsyncIterator[grpc.aio.Channel]:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/direct.sock", api)  # type: ignore[arg-type]
    channel = grpc.aio.insecure_channel(runtime.address, options=KUBELET_OPTIONS)
    try:
        yield channel
    finally:
        await channel.close(None)
        await runtime.stop(None)








async def lifecycle(client: Client) -> list[tuple[str, str, Any]]:
    """The kubelet's calls for one pod with one container; (method, status, reply) each."""
    out: list[tuple[str, str, Any]] = []

    async def step(method: str, **fields: Any) -> Any:
        try:
            reply = await client.call(method, **fields)
        except grpc.aio.AioRpcError as exc:
            out.append((method, exc.code().name, exc.details()))
            return None
        out.append((method, "OK", reply))
        return reply

    pod_cfg = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"}, "hostname": "web",
               "log_directory": "/var/log/pods/web", "labels": {"app": "web"}}
    await step("Version")
    await step("Status")
    await step("ImageFsInfo")
    pulled = await step("PullImage", image={"image": "docker.io/library/nginx:1.25"})
    await step("ImageStatus", image={"image": "docker.io/library/nginx:1.25"})
    await step("ListImages")
    pod = await step("RunPodSandbox", config=pod_cfg)
    pod_id = pod.pod_sandbox_id
    await step("PodSandboxStatus", pod_sandbox_id=pod_id)
    await step("ListPodSandbox")
    ctr = await step("CreateContainer", pod_sandbox_id=pod_id, sandbox_config=pod_cfg, config={
        "metadata": {"name": "app"}, "image": {"image": "docker.io/library/nginx:1.25"},
        "envs": [{"key": "GREETING", "value": "aGVsbG8=" if client.api == "v1" else "hello"}],
        "log_path": "app/0.log"})
    cid = ctr.container_id
    await step("StartContainer", container_id=cid)
    await step("ContainerStatus", container_id=cid)
    await step("ListContainers", filter={"pod_sandbox_id": pod_id})
    await step("ExecSync", container_id=cid, cmd=["sh", "-c", "echo $GREETING; hostname"], timeout=5)
    await step("Exec", container_id=cid, cmd=["sh"], stdout=True)
    await step("ContainerStats", container_id=cid)
    await step("ListContainerStats")
    await step("ListPodSandboxStats")
    await step("UpdateContainerResources", container_id=cid, linux={"cpu_shares": 512})
    await step("ReopenContainerLog", container_id=cid)
    await step("StopContainer", container_id=cid, timeout=10)
    await step("ContainerStatus", container_id=cid)
    await step("RemoveContainer", container_id=cid)
    await step("ContainerStatus", container_id=cid)
    await step("StopPodSandbox", pod_sandbox_id=pod_id)
    await step("RemovePodSandbox", pod_sandbox_id=pod_id)
    await step("RemoveImage", image={"image": pulled.image_ref})
    await step("UpdateRuntimeConfig", runtime_config={"network_config": {"pod_cidr": "10.0.0.0/24"}})
    return out


HEX_ID = re.compile(r"\b[0-9a-f]{32,64}\b")
VOLATILE = {"created_at", "started_at", "finished_at", "timestamp", "url", "image_ref",
            "runtime_api_version"}


def normalize(steps: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """Replies as v1alpha2 sees them (v1-only fields dropped), ids and times made stable."""
    ids: dict[str, str] = {}
    numbers = False  # stats counters move with time: compare their shape only

    def scrub(value: Any) -> Any:
        if isinstance(value, dict) and numbers and set(value) <= {"value"}:
            return "<n>"  # a UInt64Value counter, empty when it happened to be 0
        if isinstance(value, dict):
            return {k: ("<t>" if k in VOLATILE else scrub(v)) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str) and numbers and value.isdigit():
            return "<n>"
        if isinstance(value, int) and numbers and not isinstance(value, bool):
            return "<n>"
        if isinstance(value, str):
            return HEX_ID.sub(lambda m: ids.setdefault(m.group(0), f"<id{len(ids)}>"), value)
        return value

    out = []
    for method, code, reply in steps:
        numbers = "Stats" in method or method == "ImageFsInfo"
        if code == "OK":
            old = getattr(v1alpha2, type(reply).DESCRIPTOR.name).FromString(reply.SerializeToString())
            old.DiscardUnknownFields()
            reply = scrub(json_format.MessageToDict(old, preserving_proto_field_name=True))
        else:
            reply = scrub(reply)
        out.append((method, code, reply))
    return out


@pytest.mark.parametrize("client_api,runtime_api", [("v1", "v1alpha2"), ("v1alpha2", "v1")])
async def test_lifecycle_through_bridge_matches_direct(sock_dir: pathlib.Path, client_api: str,
                                                       runtime_api: str) -> None:
    async with direct(sock_dir, client_api) as channel:
        expected = normalize(await lifecycle(Client(channel, client_api)))
    async with bridged(sock_dir, runtime_api) as (_, bridge, sink, channel):
        assert bridge.api_for("runtime") == runtime_api
        got = normalize(await lifecycle(Client(channel, client_api)))
    assert [s[:2] for s in got] == [s[:2] for s in expected]
    for g, e in zip(got, expected, strict=True):
        assert g == e, g[0]
    # every call recorded, with both versions and the raw messages
    assert len(sink.calls) == len(got)
    for call in sink.calls:
        assert (call.client_api, call.upstream_api) == (client_api, runtime_api)
        assert f"translated {client_api} -> {runtime_api}" in call.notes
        assert call.request_bytes >= 0 and call.duration_s is not None
    assert any(c.status_code == grpc.StatusCode.NOT_FOUND.value[0] for c in sink.calls)


# --- how kubelets negotiate, in front of each kind of runtime --------------------------------

async def kubelet_1_23_negotiate(channel: grpc.aio.Channel) -> tuple[str, str]:
    """Kubernetes 1.23-1.25: v1 Version (v1alpha2 on UNIMPLEMENTED); the image client alike."""
    chosen = []
    for method, service in (("Version", "RuntimeService"), ("ImageFsInfo", "ImageService")):
        for api in ("v1", "v1alpha2"):
            try:
                await Client(channel, api).call(method)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED and api == "v1":
                    continue
                raise
            chosen.append(api)
            break
    return chosen[0], chosen[1]


@pytest.mark.parametrize("runtime_api", ["v1", "v1alpha2", "both"])
async def test_old_kubelet_negotiation_through_bridge(sock_dir: pathlib.Path, runtime_api: str) -> None:
    async with bridged(sock_dir, runtime_api) as (_, bridge, _sink, channel):
        runtime_choice, image_choice = await kubelet_1_23_negotiate(channel)
        assert (runtime_choice, image_choice) == ("v1", "v1")
        client = Client(channel, runtime_choice)
        pod = await client.call("RunPodSandbox", config={"metadata": {"name": "p", "namespace": "n", "uid": "u"}})
        listed = await client.call("ListPodSandbox")
        assert [p.id for p in listed.items] == [pod.pod_sandbox_id]
        assert len((await client.call("ListImages")).images) >= 1
        assert bridge.api_for("runtime") == ("v1" if runtime_api == "both" else runtime_api)


@pytest.mark.parametrize("runtime_api", ["v1", "v1alpha2", "both"])
async def test_new_kubelet_validation_through_bridge(sock_dir: pathlib.Path, runtime_api: str) -> None:
    async with bridged(sock_dir, runtime_api) as (_, _bridge, _sink, channel):
        client = Client(channel, "v1")
        version = await client.call("Version")  # 1.26+: both must succeed or the kubelet exits
        await client.call("ImageFsInfo")
        assert version.runtime_name == "cri-proxy-fake"
        status = await client.call("Status")
        assert {c.type for c in status.status.conditions} >= {"RuntimeReady"}


async def test_v1alpha2_client_direct_to_v1_runtime_fails_but_bridge_serves_it(sock_dir: pathlib.Path) -> None:
    async with direct(sock_dir, "v1") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Client(channel, "v1alpha2").call("Version")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    async with bridged(sock_dir, "v1") as (_, _bridge, _sink, channel):
        assert (await Client(channel, "v1alpha2").call("Version")).runtime_api_version == "v1"


async def test_separate_image_endpoint(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", "v1")
    images = await start_fake_runtime(f"unix://{sock_dir}/img.sock", "v1alpha2")
    seen: list[UpstreamApis] = []
    sink = MemorySink()
    try:
        async with (probed_bridge(sock_dir, sock_dir / "rt.sock", sock_dir / "img.sock", sink=sink,
                                  on_change=seen.append) as bridge,
                    grpc.aio.insecure_channel(bridge.address) as channel):
            assert bridge.api_for("runtime") == "v1" and bridge.api_for("image") == "v1alpha2"
            assert seen == [UpstreamApis(runtime=("v1",), image=("v1alpha2",))]
            await Client(channel, "v1").call("PullImage", image={"image": "example.com/only/here:1"})
            listed = await Client(channel, "v1").call("ListImages")
            assert "example.com/only/here:1" in [t for i in listed.images for t in i.repo_tags]
            assert not images.state.pods and not runtime.state.images.find("example.com/only/here:1")
            await recorded(sink, 2)
        assert sink.calls[-1].upstream.endswith("img.sock") and sink.calls[-1].upstream_api == "v1alpha2"
    finally:
        await runtime.stop(None)
        await images.stop(None)


# --- what the proxy answers itself -----------------------------------------------------------

STREAMS = [("RuntimeService", "StreamPodSandboxes"), ("RuntimeService", "StreamContainers"),
           ("RuntimeService", "StreamContainerStats"), ("RuntimeService", "StreamPodSandboxStats"),
           ("RuntimeService", "StreamPodSandboxMetrics"), ("ImageService", "StreamImages")]


async def test_stream_rpcs_unimplemented_for_v1alpha2_runtime(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1alpha2") as (_, _bridge, sink, channel):
        for service, method in STREAMS:
            call = channel.unary_stream(f"/runtime.v1.{service}/{method}")(b"")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "v1alpha2" in (err.value.details() or "")
        await recorded(sink, len(STREAMS))
        assert all(c.status_code == grpc.StatusCode.UNIMPLEMENTED.value[0] for c in sink.calls)


async def test_stream_rpcs_stream_through_from_v1_runtime(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "v1", emulate_events=True, container_events=False) as (rt, _b, _s, channel):
        rt.runtime.populate(250)  # more than one chunk of 100
        call = channel.unary_stream("/runtime.v1.RuntimeService/StreamContainers",
                                    request_serializer=v1.StreamContainersRequest.SerializeToString,
                                    response_deserializer=v1.StreamContainersResponse.FromString)(
            v1.StreamContainersRequest())
        sizes = [len(m.containers) async for m in call]
        assert sizes == [100, 100, 50]


async def test_upstream_api_override(sock_dir: pathlib.Path) -> None:
    async with bridged(sock_dir, "both", upstream_api="v1alpha2") as (_, bridge, sink, channel):
        assert bridge.api_for("runtime") == "v1alpha2"
        version = await Client(channel, "v1").call("Version")
        assert version.runtime_api_version == "v1alpha2"
        calls = await recorded(sink, 1)
        assert (calls[0].client_api, calls[0].upstream_api) == ("v1", "v1alpha2")
