"""A request read before it goes on (proxy/heldbody.py): v1 requests through `cri-proxy run`
in front of a v1alpha2-only stand-in runtime, refused or noted as the bridge does."""

from __future__ import annotations

import json
import pathlib

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.store.readonly import open_readonly
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(60)

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]


async def test_checked_requests_are_refused_or_noted_as_the_bridge_does(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1alpha2")
    db = sock_dir / "c.db"
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db),
                                "--strict-translation") as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                rt = v1_grpc.RuntimeServiceStub(channel)
                config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name="p", namespace="n", uid="u"))
                pod = await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))

                def create(**fields: object) -> v1.CreateContainerRequest:
                    return v1.CreateContainerRequest(pod_sandbox_id=pod.pod_sandbox_id, sandbox_config=config,
                                                     config=v1.ContainerConfig(
                                                         metadata=v1.ContainerMetadata(name="c"),
                                                         image=v1.ImageSpec(image="busybox"), **fields))
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await rt.CreateContainer(create(envs=[v1.KeyValue(key="K", value=b"\xff\xfe")]))
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "must be valid UTF-8" in (bad.value.details() or "")
                with pytest.raises(grpc.aio.AioRpcError) as strict:
                    await rt.CreateContainer(create(mounts=[v1.Mount(container_path="/a", recursive_read_only=True)]))
                assert strict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                # a v1-only field that weakens nothing goes through, noted; the connection goes on
                big = create(envs=[v1.KeyValue(key=f"E{i}", value=b"x" * 100) for i in range(400)])
                big.config.image.user_specified_image = "busybox"
                assert (await rt.CreateContainer(big)).container_id
                assert len(list((await rt.ListContainers(v1.ListContainersRequest())).containers)) == 1
            assert await proxy.astop() == 0, proxy.log()
        conn = open_readonly(db)
        try:
            notes = [json.loads(n) for (n,) in conn.execute(
                "SELECT notes FROM calls WHERE path LIKE '%CreateContainer' ORDER BY stream_id")]
            everything = conn.execute("SELECT path, outcome, status_code, notes, request_bytes FROM calls").fetchall()
        finally:
            conn.close()
    finally:
        await runtime.stop(0)
    assert len(notes) == 3, everything
    assert "refused: env values not valid UTF-8: config.envs[0] ('K')" in notes[0]
    assert "refused (strict): v1-only fields set: config.mounts[0].recursive_read_only" in notes[1]
    assert "v1-only fields ignored by the v1alpha2 runtime: config.image.user_specified_image" in notes[2]
