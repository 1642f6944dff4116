"""Fault rules on pod facts (proxy/bodyfaults.py): real gRPC clients through `cri-proxy run
--faults` in front of the stand-in runtime; a rule on one namespace reaches that pod's calls
and no other, the id-only ones too, learned from answers and, after a restart, from relists."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
from collections.abc import AsyncIterator

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.model.cri import parse_path
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.proxy.bodyfaults import BodyFaults
from cri_proxy.proxy.podfacts import FactTable
from cri_proxy.store.readonly import open_readonly
from tests.conftest import ROOT
from tests.helpers.kubeletlike import KubeletLike, code
from tests.helpers.proxyproc import ProxyProcess

pytestmark = pytest.mark.timeout(90)

CHANNEL = [("grpc.use_local_subchannel_pool", 1)]
BUSYBOX, NGINX = "docker.io/library/busybox:latest", "docker.io/library/nginx:latest"
RULES = """
rules:
  - name: broken-ns
    match: {namespace: broken, method: [PodSandboxStatus, StartContainer, ContainerStatus, StopContainer]}
    action: {error: {code: UNAVAILABLE, message: "injected: namespace broken"}}
  - name: slow-create
    match: {method: CreateContainer, namespace: slow, container: app}
    action: {delay: 1s}
  - name: no-busybox
    match: {method: PullImage, image: "*busybox*"}
    action: {error: {code: NOT_FOUND, message: "injected: no busybox"}}
  - name: stuck-nginx-status
    match: {method: ImageStatus, image: "*nginx*"}
    action: {hang: deadline}
"""


def _fault_notes(db: pathlib.Path) -> list[tuple[str, str]]:
    conn = open_readonly(db)
    try:
        rows = conn.execute("SELECT path, notes FROM calls ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(path.rsplit("/", 1)[-1], note) for path, notes in rows for note in json.loads(notes or "[]")
            if note.startswith("fault: ")]


@contextlib.asynccontextmanager
async def _through_proxy(sock_dir: pathlib.Path, runtime: pathlib.Path, db: pathlib.Path,
                         rules: pathlib.Path) -> AsyncIterator[tuple[v1_grpc.RuntimeServiceStub, v1_grpc.ImageServiceStub]]:
    """A `cri-proxy run --faults RULES --db DB` in front of `runtime`, and a client's stubs through it."""
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(db), "--faults", str(rules)) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
            yield v1_grpc.RuntimeServiceStub(channel), v1_grpc.ImageServiceStub(channel)
        assert await proxy.astop() == 0, proxy.log()


def _pod(namespace: str) -> v1.PodSandboxConfig:
    return v1.PodSandboxConfig(metadata=v1.PodSandboxMetadata(name=f"web-{namespace}", namespace=namespace, uid=namespace))


async def _start_pod(rt: v1_grpc.RuntimeServiceStub, namespace: str, name: str = "app") -> tuple[str, str, float]:
    """A pod with one container; the seconds CreateContainer took."""
    config = _pod(namespace)
    sandbox = (await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))).pod_sandbox_id
    started = asyncio.get_running_loop().time()
    created = await rt.CreateContainer(v1.CreateContainerRequest(
        pod_sandbox_id=sandbox, sandbox_config=config,
        config=v1.ContainerConfig(metadata=v1.ContainerMetadata(name=name), image=v1.ImageSpec(image=NGINX))))
    return sandbox, created.container_id, asyncio.get_running_loop().time() - started


async def test_a_namespace_rule_reaches_that_pods_calls_only_and_survives_a_restart(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    rules, first_db, second_db = sock_dir / "rules.yaml", sock_dir / "a.db", sock_dir / "b.db"
    rules.write_text(RULES)
    try:
        async with _through_proxy(sock_dir, pathlib.Path(runtime.path), first_db, rules) as (rt, img):
            # the image is in the request: one image's pulls fail, another's go through
            assert await code(img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=BUSYBOX)))) == "NOT_FOUND"
            assert await code(img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=NGINX)))) == "OK"
            assert await code(img.ImageStatus(v1.ImageStatusRequest(image=v1.ImageSpec(image=NGINX)),
                                               timeout=1.0)) == "DEADLINE_EXCEEDED"
            assert await code(img.ImageStatus(v1.ImageStatusRequest(image=v1.ImageSpec(image=BUSYBOX)))) == "OK"
            broken_pod, broken_ctr, _ = await _start_pod(rt, "broken")
            fine_pod, fine_ctr, quick = await _start_pod(rt, "fine")
            slow_pod, slow_ctr, slow = await _start_pod(rt, "slow")
            assert slow >= 1.0 > quick
            # id-only calls: the ids came from the RunPodSandbox and CreateContainer answers
            seen = [await code(rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=pod)))
                    for pod in (broken_pod, fine_pod, slow_pod)]
            seen += [await code(rt.StartContainer(v1.StartContainerRequest(container_id=ctr)))
                     for ctr in (broken_ctr, fine_ctr, slow_ctr)]
            assert seen == ["UNAVAILABLE", "OK", "OK", "UNAVAILABLE", "OK", "OK"]
        async with _through_proxy(sock_dir, pathlib.Path(runtime.path), second_db, rules) as (rt, _):
            # a new proxy knows no ids until the kubelet relists
            assert await code(rt.ContainerStatus(v1.ContainerStatusRequest(container_id=broken_ctr))) == "OK"
            assert len((await rt.ListPodSandbox(v1.ListPodSandboxRequest())).items) == 3
            assert len((await rt.ListContainers(v1.ListContainersRequest())).containers) == 3
            seen = [await code(rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr)))
                    for ctr in (broken_ctr, fine_ctr)]
            seen.append(await code(rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=broken_pod))))
            # a removed pod is forgotten: the runtime answers for it again
            await rt.RemovePodSandbox(v1.RemovePodSandboxRequest(pod_sandbox_id=broken_pod))
            seen.append(await code(rt.PodSandboxStatus(v1.PodSandboxStatusRequest(pod_sandbox_id=broken_pod))))
            seen.append(await code(rt.StopContainer(v1.StopContainerRequest(container_id=broken_ctr))))
            assert seen == ["UNAVAILABLE", "OK", "UNAVAILABLE", "NOT_FOUND", "NOT_FOUND"]
    finally:
        await runtime.stop(0)
    assert _fault_notes(first_db) == [
        ("PullImage", "fault: no-busybox error NOT_FOUND"), ("ImageStatus", "fault: stuck-nginx-status hang"),
        ("CreateContainer", "fault: slow-create delay 1.000s"),
        ("PodSandboxStatus", "fault: broken-ns error UNAVAILABLE"), ("StartContainer", "fault: broken-ns error UNAVAILABLE")]
    assert _fault_notes(second_db) == [("ContainerStatus", "fault: broken-ns error UNAVAILABLE"),
                                       ("PodSandboxStatus", "fault: broken-ns error UNAVAILABLE")]


TRANSLATED_RULES = """
rules:
  - name: create-victim
    match: {method: CreateContainer, namespace: broken, container: victim}
    action: {error: {code: FAILED_PRECONDITION, message: "injected: no victim"}}
  - name: create-slow
    match: {method: CreateContainer}
    action: {delay: 1s}
    first: 1
  - name: status-broken
    match: {method: ContainerStatus, namespace: broken}
    action: {error: {code: UNAVAILABLE, message: "injected: namespace broken"}}
"""


def _big(name: str) -> v1.ContainerConfig:
    """A config of several DATA frames (its envs), whose relisted Container is large too (annotations)."""
    return v1.ContainerConfig(metadata=v1.ContainerMetadata(name=name), image=v1.ImageSpec(image=NGINX),
                              envs=[v1.KeyValue(key=f"E{i}", value=b"v" * 1000) for i in range(40)],
                              annotations={"big": "a" * 1500})


async def test_rules_decide_in_file_order_on_a_translated_connection_with_large_messages(
        sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1alpha2")
    rules, first_db, second_db = sock_dir / "rules.yaml", sock_dir / "a.db", sock_dir / "b.db"
    rules.write_text(TRANSLATED_RULES)
    try:
        async with _through_proxy(sock_dir, pathlib.Path(runtime.path), first_db, rules) as (rt, img):
            await img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=NGINX)))
            config = _pod("broken")
            pod = (await rt.RunPodSandbox(v1.RunPodSandboxRequest(config=config))).pod_sandbox_id
            create = [v1.CreateContainerRequest(pod_sandbox_id=pod, sandbox_config=config, config=_big(name))
                      for name in ["victim"] + [f"c{i}" for i in range(12)]]
            assert create[0].ByteSize() > 2 * 16384
            # the first rule wins, though the second (on the method only) matches too
            assert await code(rt.CreateContainer(create[0])) == "FAILED_PRECONDITION"
            started = asyncio.get_running_loop().time()
            ids = [(await rt.CreateContainer(request)).container_id for request in create[1:]]
            assert asyncio.get_running_loop().time() - started >= 1.0  # c0's held frames went on after 1 s
        async with _through_proxy(sock_dir, pathlib.Path(runtime.path), second_db, rules) as (rt, _):
            await rt.ListPodSandbox(v1.ListPodSandboxRequest())
            relist = await rt.ListContainers(v1.ListContainersRequest())
            assert sorted(c.metadata.name for c in relist.containers) == sorted(f"c{i}" for i in range(12))
            assert relist.ByteSize() > 16384  # the answer read across DATA frames
            seen = [await code(rt.ContainerStatus(v1.ContainerStatusRequest(container_id=ctr)))
                    for ctr in (ids[0], ids[-1])]
            assert seen == ["UNAVAILABLE", "UNAVAILABLE"]
    finally:
        await runtime.stop(0)
    assert _fault_notes(first_db) == [("CreateContainer", "fault: create-victim error FAILED_PRECONDITION"),
                                      ("CreateContainer", "fault: create-slow delay 1.000s")]
    assert _fault_notes(second_db) == [("ContainerStatus", "fault: status-broken error UNAVAILABLE")] * 2


def _wanted(faults: BodyFaults, *methods: str) -> tuple[list[str], list[str]]:
    """The methods whose requests are read, and those whose answers are."""
    faults.replies.clear()
    read = [m for i, m in enumerate(methods) if faults.wants(i, parse_path(f"/runtime.v1.RuntimeService/{m}"))]
    return read, [methods[i] for i in faults.replies]


def test_only_a_loaded_pod_rule_makes_requests_read_and_only_those_it_can_turn_on() -> None:
    book = FaultBook(parse_rules({"rules": [{"name": "v", "match": {"method": "Version"}, "action": "close"}]}, "t"))
    faults = BodyFaults(book, FactTable(), "kubelet")
    methods = ("Version", "StopContainer", "ListContainers", "RunPodSandbox", "Status", "ExecSync")
    assert _wanted(faults, *methods) == ([], [])  # no pod rule: nothing is read
    book.replace(parse_rules({"rules": [{"name": "ns", "match": {"namespace": "x", "method": ["Stop*", "List*"]},
                                         "action": "close"}]}, "t"))
    # StopContainer and ListContainers (its filter) may turn on a pod, RunPodSandbox's request teaches the
    # table with its answer, and a relist's answer says it all; Status names no pod
    assert _wanted(faults, *methods) == (["StopContainer", "ListContainers", "RunPodSandbox"], [])
    book.replace(parse_rules({"rules": [{"name": "ns", "match": {"namespace": "x", "method": "Stop*"},
                                         "action": "close"}]}, "t"))
    assert _wanted(faults, *methods) == (["StopContainer", "RunPodSandbox"], ["ListContainers"])
    book.replace(parse_rules({"rules": [{"name": "ns", "match": {"namespace": "x", "client": "crictl"},
                                         "action": "close"}]}, "t"))
    assert _wanted(faults, *methods) == (["RunPodSandbox"], ["ListContainers"])  # not this client's: learning only


async def test_the_one_namespace_example_faults_that_namespace_and_that_image_only(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    db = sock_dir / "c.db"
    try:
        rules = ROOT / "examples" / "faults" / "one-namespace.yaml"
        async with _through_proxy(sock_dir, pathlib.Path(runtime.path), db, rules) as (rt, img):
            broken = v1.PullImageRequest(image=v1.ImageSpec(image="docker.io/example/broken:1"),
                                         sandbox_config=_pod("team-a"))
            pulls = [await code(img.PullImage(broken)) for _ in range(2)]  # the kubelet's back-off retries
            pulls.append(await code(img.PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=NGINX)))))
            assert pulls == ["NOT_FOUND", "NOT_FOUND", "OK"]
            team_a, team_b = await _start_pod(rt, "team-a"), await _start_pod(rt, "team-b")
            assert team_a[2] >= 2.0 > team_b[2]
            starts = [await code(rt.StartContainer(v1.StartContainerRequest(container_id=ctr)))
                      for ctr in (team_b[1], team_a[1], team_a[1])]
            assert starts == ["OK", "UNKNOWN", "OK"]  # the first of team-a's only
    finally:
        await runtime.stop(0)
    assert _fault_notes(db) == [("PullImage", "fault: broken-image error NOT_FOUND")] * 2 + [
        ("CreateContainer", "fault: team-a-slow-create delay 2.000s"),
        ("StartContainer", "fault: team-a-first-start-fails error UNKNOWN")]


STATUS_RULES = """
rules:
  - name: broken-pod
    match: {method: [PodSandboxStatus, StopPodSandbox], namespace: broken}
    action: {error: {code: UNAVAILABLE, message: "injected: namespace broken"}}
  - name: victim
    match: {method: [ContainerStatus, StopContainer], container: victim, image: "*nginx*"}
    action: {error: {code: FAILED_PRECONDITION, message: "injected: victim"}}
"""


async def test_a_proxy_started_under_running_pods_learns_them_from_the_kubelets_status_calls(
        sock_dir: pathlib.Path) -> None:
    # The pods were made before the proxy (or a restarted one): no RunPodSandbox or CreateContainer
    # answer, and here no relist either; a kubelet asks the status of every pod it finds
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    rules, db = sock_dir / "rules.yaml", sock_dir / "c.db"
    rules.write_text(STATUS_RULES)
    try:
        async with grpc.aio.insecure_channel(runtime.address, options=CHANNEL) as direct:
            await v1_grpc.ImageServiceStub(direct).PullImage(v1.PullImageRequest(image=v1.ImageSpec(image=NGINX)))
            broken, victim, _ = await _start_pod(v1_grpc.RuntimeServiceStub(direct), "broken", "victim")
            fine, app, _ = await _start_pod(v1_grpc.RuntimeServiceStub(direct), "fine")
        async with ProxyProcess(sock_dir / "p.sock", pathlib.Path(runtime.path), "--db", str(db),
                                "--faults", str(rules)) as proxy:
            async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock", options=CHANNEL) as channel:
                kubelet = KubeletLike(channel)
                # unknown ids match no pod rule: the first sync goes through, and its answers teach them
                assert await kubelet.sync_pod(broken, [victim]) == ["OK", "OK"]
                assert await kubelet.sync_pod(fine, [app]) == ["OK", "OK"]
                assert await kubelet.sync_pod(broken, [victim]) == ["UNAVAILABLE", "FAILED_PRECONDITION"]
                assert await kubelet.sync_pod(fine, [app]) == ["OK", "OK"]
                rt = kubelet.rt
                stops = [await code(rt.StopContainer(v1.StopContainerRequest(container_id=ctr)))
                         for ctr in (victim, app)]
                stops += [await code(rt.StopPodSandbox(v1.StopPodSandboxRequest(pod_sandbox_id=pod)))
                          for pod in (broken, fine)]
                assert stops == ["FAILED_PRECONDITION", "OK", "UNAVAILABLE", "OK"]
            assert await proxy.astop() == 0, proxy.log()
    finally:
        await runtime.stop(0)
    assert _fault_notes(db) == [("PodSandboxStatus", "fault: broken-pod error UNAVAILABLE"),
                                ("ContainerStatus", "fault: victim error FAILED_PRECONDITION"),
                                ("StopContainer", "fault: victim error FAILED_PRECONDITION"),
                                ("StopPodSandbox", "fault: broken-pod error UNAVAILABLE")]
