"""Pod facts read from the wire (proxy/podfacts.py), and the bounded id -> facts table."""

from __future__ import annotations

import pytest

from cri_proxy.model.protowire import WireError
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.proxy import podfacts
from cri_proxy.proxy.podfacts import FactTable


def _sandbox(pb: object, namespace: str = "ns") -> object:
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name="web", namespace=namespace, uid="u"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("pb", [v1, v1alpha2], ids=["v1", "v1alpha2"])
def test_requests_give_the_facts_a_kubelet_put_in_them(pb: object) -> None:
    create = pb.CreateContainerRequest(  # type: ignore[attr-defined]
        pod_sandbox_id="p1", sandbox_config=_sandbox(pb), config=pb.ContainerConfig(  # type: ignore[attr-defined]
            metadata=pb.ContainerMetadata(name="app"), image=pb.ImageSpec(image="nginx:1"),  # type: ignore[attr-defined]
            mounts=[pb.Mount(container_path="/data")]))  # type: ignore[attr-defined]
    assert podfacts.request_facts("CreateContainer", create.SerializeToString()) == {
        "sandbox_id": "p1", "container": "app", "image": "nginx:1", "pod": "web", "namespace": "ns"}
    pull = pb.PullImageRequest(image=pb.ImageSpec(image="busybox"), sandbox_config=_sandbox(pb, "kube-system"))  # type: ignore[attr-defined]
    assert podfacts.request_facts("PullImage", pull.SerializeToString()) == {
        "image": "busybox", "pod": "web", "namespace": "kube-system"}
    stop = pb.StopContainerRequest(container_id="c1", timeout=3)  # type: ignore[attr-defined]
    assert podfacts.request_facts("StopContainer", stop.SerializeToString()) == {"container_id": "c1"}
    assert podfacts.request_facts("Version", b"\x0a\x02v1") == {}


def test_a_repeated_singular_field_merges_as_protobuf_merges_it() -> None:
    first = v1.PodSandboxStatusRequest(pod_sandbox_id="old").SerializeToString()
    second = v1.PodSandboxStatusRequest(pod_sandbox_id="new").SerializeToString()
    assert v1.PodSandboxStatusRequest.FromString(first + second).pod_sandbox_id == "new"
    assert podfacts.request_facts("PodSandboxStatus", first + second) == {"sandbox_id": "new"}


def test_relists_give_one_record_per_item() -> None:
    pods = v1.ListPodSandboxResponse(items=[
        v1.PodSandbox(id="p1", metadata=v1.PodSandboxMetadata(name="a", namespace="x"), labels={"k": "v"}),
        v1.PodSandbox(id="p2", metadata=v1.PodSandboxMetadata(name="b", namespace="y"))])
    assert podfacts.reply_records("ListPodSandbox", pods.SerializeToString()) == [
        {"sandbox_id": "p1", "pod": "a", "namespace": "x"}, {"sandbox_id": "p2", "pod": "b", "namespace": "y"}]
    containers = v1.ListContainersResponse(containers=[v1.Container(
        id="c1", pod_sandbox_id="p1", metadata=v1.ContainerMetadata(name="app"), image=v1.ImageSpec(image="nginx"),
        image_ref="sha256:abc")])
    assert podfacts.reply_records("ListContainers", containers.SerializeToString()) == [
        {"container_id": "c1", "sandbox_id": "p1", "container": "app", "image": "nginx"}]
    assert podfacts.reply_records("RunPodSandbox", v1.RunPodSandboxResponse(pod_sandbox_id="p9")
                                  .SerializeToString()) == [{"sandbox_id": "p9"}]


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x80", b"\x12\x03\x0a\x05x"])
def test_malformed_bytes_are_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        podfacts.request_facts("CreateContainer", data)


def test_the_table_resolves_ids_and_what_a_request_says_wins() -> None:
    table = FactTable()
    table.learn({"sandbox_id": "p1", "pod": "web", "namespace": "ns"})
    table.learn({"container_id": "c1", "sandbox_id": "p1", "container": "app", "image": "nginx"})
    assert table.resolve({"container_id": "c1"}) == {
        "container_id": "c1", "sandbox_id": "p1", "container": "app", "image": "nginx", "pod": "web", "namespace": "ns"}
    assert table.resolve({"sandbox_id": "p1", "namespace": "told"})["namespace"] == "told"
    assert table.resolve({"container_id": "unknown"}) == {"container_id": "unknown"}
    table.learn({"sandbox_id": "p1", "pod": "web-renamed"})  # a relist refreshes what it says, keeps the rest
    assert table.sandboxes["p1"] == {"pod": "web-renamed", "namespace": "ns"}


def test_removing_a_sandbox_forgets_its_containers() -> None:
    table = FactTable()
    table.learn({"sandbox_id": "p1", "pod": "a", "namespace": "x"})
    table.learn({"sandbox_id": "p2", "pod": "b", "namespace": "x"})
    table.learn({"container_id": "c1", "sandbox_id": "p1", "container": "app"})
    table.learn({"container_id": "c2", "sandbox_id": "p2", "container": "app"})
    table.forget("sandbox_id", "p1")
    assert set(table.sandboxes) == {"p2"} and set(table.containers) == {"c2"}
    table.forget("container_id", "c2")
    assert table.containers == {}


def test_the_table_is_bounded_and_drops_the_id_learned_longest_ago() -> None:
    table = FactTable(max_sandboxes=3, max_containers=2)
    for i in range(5):
        table.learn({"sandbox_id": f"p{i}", "namespace": "x"})
    table.learn({"sandbox_id": "p2", "namespace": "y"})  # learned again: now the newest
    table.learn({"sandbox_id": "p5", "namespace": "x"})
    assert list(table.sandboxes) == ["p4", "p2", "p5"]
    for i in range(3):
        table.learn({"container_id": f"c{i}", "container": "app"})
    assert list(table.containers) == ["c1", "c2"]


def test_a_relist_read_again_is_new_only_once_something_was_forgotten() -> None:
    table = FactTable(max_sandboxes=1)
    relist = v1.ListPodSandboxResponse(items=[v1.PodSandbox(id="p1")]).SerializeToString()
    assert table.new_relist("ListPodSandbox", relist)
    assert not table.new_relist("ListPodSandbox", relist)
    assert table.new_relist("ListContainers", relist)  # each method has its own
    table.learn({"sandbox_id": "p1", "namespace": "x"})
    table.learn({"sandbox_id": "p2", "namespace": "x"})  # drops p1: the same relist teaches it again
    assert table.new_relist("ListPodSandbox", relist)
    table.forget("sandbox_id", "p2")
    assert table.new_relist("ListPodSandbox", relist) and not table.new_relist("ListPodSandbox", relist)


@pytest.mark.parametrize("pb", [v1, v1alpha2], ids=["v1", "v1alpha2"])
def test_status_answers_say_which_pod_and_container_an_id_is(pb: object) -> None:
    # what a kubelet restarted after its pods asks of each: the proxy learns the ids from the answers
    pod = pb.PodSandboxStatusResponse(  # type: ignore[attr-defined]
        status=pb.PodSandboxStatus(id="p1", metadata=pb.PodSandboxMetadata(name="web", namespace="ns", uid="u"),  # type: ignore[attr-defined]
                                   labels={"io.kubernetes.pod.name": "web"}), info={"info": "{}"})
    assert podfacts.reply_records("PodSandboxStatus", pod.SerializeToString()) == [
        {"sandbox_id": "p1", "pod": "web", "namespace": "ns"}]
    ctr = pb.ContainerStatusResponse(status=pb.ContainerStatus(  # type: ignore[attr-defined]
        id="c1", metadata=pb.ContainerMetadata(name="app"), image=pb.ImageSpec(image="nginx:1"),  # type: ignore[attr-defined]
        image_ref="sha256:abc", mounts=[pb.Mount(container_path="/data")]))  # type: ignore[attr-defined]
    assert podfacts.reply_records("ContainerStatus", ctr.SerializeToString()) == [
        {"container_id": "c1", "container": "app", "image": "nginx:1"}]
    assert not podfacts.learns_with_request("PodSandboxStatus") and podfacts.learns("ContainerStatus")


def test_answers_teach_the_table_what_a_relist_would() -> None:
    table = FactTable()
    table.answer("ContainerStatus", {"container_id": "c1"}, v1.ContainerStatusResponse(status=v1.ContainerStatus(
        id="c1", metadata=v1.ContainerMetadata(name="app"), image=v1.ImageSpec(image="nginx"))).SerializeToString())
    table.answer("PodSandboxStatus", {"sandbox_id": "p1"}, v1.PodSandboxStatusResponse(status=v1.PodSandboxStatus(
        id="p1", metadata=v1.PodSandboxMetadata(name="web", namespace="ns"))).SerializeToString())
    # ContainerStatus names no sandbox: a relist (or the CreateContainer answer) links the two
    assert table.resolve({"container_id": "c1"}) == {"container_id": "c1", "container": "app", "image": "nginx"}
    table.answer("ListContainers", {}, v1.ListContainersResponse(containers=[v1.Container(
        id="c1", pod_sandbox_id="p1")]).SerializeToString())
    assert table.resolve({"container_id": "c1"})["namespace"] == "ns"
    table.answer("RunPodSandbox", {"pod": "new", "namespace": "ns"},
                 v1.RunPodSandboxResponse(pod_sandbox_id="p2").SerializeToString())
    assert table.sandboxes["p2"] == {"pod": "new", "namespace": "ns"}
    table.answer("RemovePodSandbox", {"sandbox_id": "p1"}, b"")
    assert set(table.sandboxes) == {"p2"} and table.containers == {}
    with pytest.raises(WireError):
        table.answer("ContainerStatus", {}, b"\x0a\x05ab")
