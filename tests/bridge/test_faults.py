"""Fault rules on the calls the bridge serves (bridge/faults.py): a v1 client through `cri-proxy
run --emulate-events --faults` in front of a v1alpha2-only stand-in runtime, each action seen by
the client, recorded with its rule and counted in the metrics, and nothing on the other calls."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.store.readonly import open_readonly
from tests.helpers import scrape
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(90)

CHANNEL = [("grpc.use_local_subchannel_pool", 1), ("grpc.initial_reconnect_backoff_ms", 100)]
CLIENT = pathlib.Path("/proc/self/comm").read_text().strip()
NGINX = "docker.io/library/nginx:latest"
RULES = f"""
rules:
  - name: pull-fails
    match: {{method: PullImage, client: "{CLIENT}", api: v1}}
    action: {{error: {{code: UNAVAILABLE, message: "injected: registry unreachable"}}}}
    first: 2
  - name: slow-relist
    match: {{method: ListPodSandbox}}
    action: {{delay: 1s}}
  - name: stuck-images
    match: {{method: ListImages}}
    action: {{hang: deadline}}
  - name: late-fsinfo
    match: {{method: ImageFsInfo}}
    action: {{hang: 1s}}
  - name: broken-stop
    match: {{method: StopContainer, namespace: broken}}
    action: {{error: {{code: FAILED_PRECONDITION, message: "injected: namespace broken"}}}}
  - name: events-once
    match: {{method: GetContainerEvents}}
    action: {{error: {{code: UNAVAILABLE, message: "injected: no events"}}}}
    first: 1
  - name: status-close
    match: {{method: Status}}
    action: close
    first: 1
"""


async def _code(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "OK"


async def _pod(rt: v1_grpc.RuntimeServiceStub, namespace: str) -> str:
    config = v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name=f"web-{namespace}", namespace=namespace,
                                                                uid=namespace))
    pod = (await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))).pod_sandbox_id
    return (await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=pod, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name="app"), image=v1.ImageSpec(image=NGINX))))
    ).container_id


async def _injected(metrics: str, want: dict[tuple[str, str], float]) -> None:
    """Until the recorder's /metrics counts `want` (rule, action) -> calls; the count follows the call."""
    deadline = time.monotonic() + 20
    while True:
        found = {(dict(labels)["rule"], dict(labels)["action"]): value
                 for (name, labels), value in scrape.samples(scrape.get(metrics, "/metrics")[1]).items()
                 if name == "cri_proxy_faults_injected_total"}
        if found == want:
            return
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


async def test_bridged_calls_see_exactly_the_rules_that_match_them(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1alpha2")
    rules, db, metrics = sock_dir / "rules.yaml", sock_dir / "c.db", f"unix://{sock_dir}/m.sock"
    rules.write_text(RULES)
    try:
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--emulate-events",
                                "--events-period", "0.2", "--db", str(db), "--faults", str(rules),
                                "--metrics-listen", metrics) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                rt, img = v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
                assert (await rt.Version(v1.VersionRequest())).runtime_api_version == "v1alpha2"
                pull = v1.PullImageRequest(image=v1.ImageSpec(image=NGINX))
                pulls = [await _code(img.PullImage(pull)) for _ in range(3)]  # the kubelet's back-off retries
                assert pulls == ["UNAVAILABLE: injected: registry unreachable"] * 2 + ["OK"]
                started = time.monotonic()
                assert list((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items) == []
                assert time.monotonic() - started >= 1.0
                assert (await _code(img.ListImages(v1.ListImagesRequest(), timeout=1.0))).startswith(
                    "DEADLINE_EXCEEDED")
                assert (await img.ImageFsInfo(v1.ImageFsInfoRequest())).image_filesystems is not None
                # StopContainer names only a container id: its pod came from the bridged CreateContainer answer
                broken, fine = await _pod(rt, "broken"), await _pod(rt, "fine")
                stops = [await _code(rt.StopContainer(v1.StopContainerRequest(container_id=ctr, timeout=1)))
                         for ctr in (broken, fine)]
                assert stops == ["FAILED_PRECONDITION: injected: namespace broken", "OK"]
                events = rt.GetContainerEvents(v1.GetEventsRequest())
                assert (await _code(events.read())) == "UNAVAILABLE: injected: no events"
                events = rt.GetContainerEvents(v1.GetEventsRequest())  # the next stream is emulated
                await events.wait_for_connection()
                events.cancel()
                closed = await _code(rt.Status(v1.StatusRequest(), timeout=10))
                assert closed.startswith("UNAVAILABLE"), closed
                assert (await rt.Status(v1.StatusRequest())).status.conditions  # a new connection
            await _injected(metrics, {("pull-fails", "error"): 2, ("slow-relist", "delay"): 1,
                                      ("stuck-images", "hang"): 1, ("late-fsinfo", "hang"): 1,
                                      ("broken-stop", "error"): 1, ("events-once", "error"): 1,
                                      ("status-close", "close"): 1})
            assert await proxy.astop() == 0, proxy.log()
            assert "fault rule 'status-close': closing the client's connection" in proxy.log()
    finally:
        await runtime.stop(0)
    with open_readonly(db) as conn:
        rows = conn.execute("SELECT path, notes, duration_ms FROM calls ORDER BY id").fetchall()
    noted = [(path.rsplit("/", 1)[-1], note, duration) for path, notes, duration in rows
             for note in json.loads(notes or "[]") if note.startswith("fault: ")]
    assert [(method, note) for method, note, _ in noted] == [
        ("PullImage", "fault: pull-fails error UNAVAILABLE")] * 2 + [
        ("ListPodSandbox", "fault: slow-relist delay 1.000s"), ("ListImages", "fault: stuck-images hang"),
        ("ImageFsInfo", "fault: late-fsinfo hang 1.000s"),
        ("StopContainer", "fault: broken-stop error FAILED_PRECONDITION"),
        ("GetContainerEvents", "fault: events-once error UNAVAILABLE"), ("Status", "fault: status-close close")]
    assert all(duration >= 1000 for method, _, duration in noted if method in ("ListPodSandbox", "ImageFsInfo"))
    untouched = {path.rsplit("/", 1)[-1]: json.loads(notes) for path, notes, _ in rows if "fault: " not in notes}
    assert all(notes[0].startswith(("translated", "GetContainerEvents emulated")) for notes in untouched.values())
    assert set(untouched) == {"Version", "PullImage", "RunPodSandbox", "CreateContainer", "StopContainer",
                         "GetContainerEvents", "Status"}
