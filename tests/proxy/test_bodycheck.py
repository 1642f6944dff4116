"""The relay's wire-level request checks (proxy/bodycheck.py) find what the bridge's do."""

from __future__ import annotations

import pytest

from cri_proxy.bridge import checks
from cri_proxy.bridge.schema import wire_checks_source
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.proxy import bodycheck

CREATE = "/runtime.v1.RuntimeService/CreateContainer"


def create(**config: object) -> v1.CreateContainerRequest:
    return v1.CreateContainerRequest(pod_sandbox_id="p", config=v1.ContainerConfig(
        metadata=v1.ContainerMetadata(name="c"), image=v1.ImageSpec(image="busybox"), **config))


CASES = [
    (CREATE, create()),
    (CREATE, create(envs=[v1.KeyValue(key="A", value=b"ok"), v1.KeyValue(key="B", value=b"\xff")])),
    (CREATE, create(mounts=[v1.Mount(container_path="/a"),
                            v1.Mount(recursive_read_only=True, uidMappings=[v1.IDMapping(host_id=1)])])),
    (CREATE, create(CDI_devices=[v1.CDIDevice(name="x")], stop_signal=v1.Signal.Value("SIGKILL"))),
    ("/runtime.v1.RuntimeService/RunPodSandbox", v1.RunPodSandboxRequest(config=v1.PodSandboxConfig(
        linux=v1.LinuxPodSandboxConfig(security_context=v1.LinuxSandboxSecurityContext(
            supplemental_groups_policy=1))))),
    ("/runtime.v1.ImageService/PullImage", v1.PullImageRequest(image=v1.ImageSpec(
        image="busybox", runtime_handler="kata", user_specified_image="busybox"))),
    ("/runtime.v1.ImageService/ListImages", v1.ListImagesRequest()),
]


@pytest.mark.parametrize(("path", "request_"), CASES)
def test_the_same_findings_as_the_bridge(path: str, request_: object) -> None:
    expected = checks.inspect(request_)  # type: ignore[arg-type]
    found = bodycheck.inspect(path, request_.SerializeToString())  # type: ignore[attr-defined]
    assert (found.dropped, found.security, found.bad_utf8) == (expected.dropped, expected.security,
                                                                 expected.bad_utf8)


def test_an_explicit_zero_counts_as_unset_as_protobuf_counts_it() -> None:
    # ContainerConfig (2) > stop_signal (21) = 0, written although a serializer would omit it
    inner = b"\xa8\x01\x00"
    assert bodycheck.inspect(CREATE, b"\x12" + bytes([len(inner)]) + inner).dropped == []


@pytest.mark.parametrize("data", [b"\x12\x05ab", b"\x80", b"\x00\x01", b"\x0b", b"\x12\x02\x0d\x01"])
def test_malformed_bytes_are_a_wire_error(data: bytes) -> None:
    with pytest.raises(bodycheck.WireError):
        bodycheck.inspect(CREATE, data)


def test_only_the_request_types_that_can_carry_a_difference_are_checked() -> None:
    assert bodycheck.checked(CREATE) and not bodycheck.checked("/runtime.v1.RuntimeService/Version")


def test_the_generated_table_matches_the_descriptors() -> None:
    from cri_proxy.proxy import v1only

    with open(v1only.__file__, encoding="utf-8") as f:
        assert f.read() == wire_checks_source(), (
            "cri_proxy/proxy/v1only.py is stale: write wire_checks_source() from cri_proxy.bridge.schema into it")
