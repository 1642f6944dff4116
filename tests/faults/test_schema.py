"""Where pod facts sit in CRI messages (faults/schema.py): the relay's generated table
(proxy/podfields.py) is what the schema copy in tests/data/cri-schema says."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from cri_proxy.faults import schema
from cri_proxy.proxy import podfields
from tests.conftest import ROOT

SCHEMA = ROOT / "tests" / "data" / "cri-schema"


def _file(name: str) -> FileDescriptor:
    """The last file of a FileDescriptorSet (its imports come first), in a pool of its own."""
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString((SCHEMA / name).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in fds.file:
        pool.Add(proto)
    return pool.FindFileByName(fds.file[-1].name)


def test_the_generated_table_is_what_the_schema_copy_says() -> None:
    files = (_file("cri-v1-v0.36.3.pb"), _file("cri-v1alpha2.pb"))
    with open(podfields.__file__, encoding="utf-8") as f:
        assert f.read() == schema.source(files), (
            "cri_proxy/proxy/podfields.py is stale: python -m cri_proxy.faults.schema > cri_proxy/proxy/podfields.py")
    assert schema.source(files) == schema.source(schema.project_files())  # the project's own descriptors agree


def test_facts_sit_where_a_kubelet_puts_them() -> None:
    # CreateContainerRequest: pod_sandbox_id, config.metadata.name, config.image.image, sandbox_config.metadata
    assert podfields.REQUESTS["CreateContainer"] == {
        1: "sandbox_id", 2: {1: {1: "container"}, 2: {1: "image"}}, 3: {1: {1: "pod", 3: "namespace"}}}
    assert podfields.REQUESTS["StopContainer"] == {1: "container_id"}
    assert podfields.REPLIES["ListPodSandbox"] == (1, {1: "sandbox_id", 2: {1: "pod", 3: "namespace"}})
    assert "Version" not in podfields.REQUESTS  # a call about no pod


def test_a_repeated_field_is_not_the_calls_subject() -> None:
    # ContainerConfig.mounts[].image is an ImageSpec (v1): not the container's image
    files = schema.project_files()
    create = files[0].services_by_name["RuntimeService"].methods_by_name["CreateContainer"].input_type
    mounts = create.fields_by_name["config"].message_type.fields_by_name["mounts"]
    assert mounts.message_type.fields_by_name["image"].message_type.name == "ImageSpec"
    assert mounts.number not in schema.tree(create)[2]  # type: ignore[operator]


def test_a_method_whose_facts_move_between_versions_is_refused() -> None:
    v1 = descriptor_pb2.FileDescriptorProto(name="a.proto", package="a", message_type=[
        descriptor_pb2.DescriptorProto(name="Req", field=[descriptor_pb2.FieldDescriptorProto(
            name="container_id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)])],
        service=[descriptor_pb2.ServiceDescriptorProto(name="RuntimeService", method=[
            descriptor_pb2.MethodDescriptorProto(name="StopContainer", input_type=".a.Req", output_type=".a.Req")])])
    moved = descriptor_pb2.FileDescriptorProto()
    moved.CopyFrom(v1)
    moved.name, moved.package = "b.proto", "b"
    moved.message_type[0].field[0].number = 2
    moved.service[0].method[0].input_type = moved.service[0].method[0].output_type = ".b.Req"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(v1)
    pool.Add(moved)
    with pytest.raises(ValueError, match="StopContainer"):
        schema.tables([pool.FindFileByName("a.proto"), pool.FindFileByName("b.proto")])
