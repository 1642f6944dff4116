"""The method path parser and the generated method table (checked against the descriptors)."""

from __future__ import annotations

from cri_proxy.model.cri import (
    METHODS,
    api_version_of,
    is_mutating,
    method_info,
    parse_path,
)
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2


def test_parse_cri_and_other_paths() -> None:
    p = parse_path("/runtime.v1alpha2.ImageService/PullImage")
    assert (p.service, p.method, p.api, p.short_service, p.is_image) == (
        "runtime.v1alpha2.ImageService", "PullImage", "v1alpha2", "ImageService", True)
    assert p.in_api("v1") == "/runtime.v1.ImageService/PullImage"
    other = parse_path("/containerd.services.version.v1.Version/Version")
    assert other.api is None and not other.is_cri and other.method == "Version"
    assert other.in_api("v1") == other.path
    assert parse_path("").method == "" and parse_path("garbage").api is None
    assert api_version_of("/runtime.v1.RuntimeService/Version") == "v1"
    assert api_version_of("/runtime.v1beta1.RuntimeService/Version") is None


def test_table_is_the_descriptors() -> None:
    expected = {}
    for file in (v1.DESCRIPTOR, v1alpha2.DESCRIPTOR):
        for service in file.services_by_name.values():
            for m in service.methods:
                expected[f"/{service.full_name}/{m.name}"] = (
                    m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming)
    got = {path: (i.request_type, i.response_type, i.client_streaming, i.server_streaming)
           for path, i in METHODS.items()}
    assert got == expected


def test_mutating_methods_exist() -> None:
    names = {parse_path(p).method for p in METHODS}
    from cri_proxy.model.cri import MUTATING
    assert MUTATING - {"CheckpointPod", "RestorePod"} <= names
    assert is_mutating("/runtime.v1.RuntimeService/StopContainer")
    info = method_info("/runtime.v1.RuntimeService/GetContainerEvents")
    assert info is not None and info.server_streaming and not info.mutating
