"""cri_proxy/bridge/checks.py: what a v1 request would lose or break on the way to v1alpha2."""

from __future__ import annotations

from cri_proxy.bridge.checks import inspect
from cri_proxy.pb.runtime.v1 import api_pb2 as v1


def test_findings_name_the_field_paths() -> None:
    req = v1.CreateContainerRequest(config=v1.ContainerConfig(
        envs=[v1.KeyValue(key="OK", value=b"fine"), v1.KeyValue(key="BAD", value=b"\xff")],
        mounts=[v1.Mount(container_path="/a"), v1.Mount(recursive_read_only=True)],
        CDI_devices=[v1.CDIDevice(name="vendor.com/gpu=0")],
        image=v1.ImageSpec(image="x", user_specified_image="x")))
    found = inspect(req)
    assert found.bad_utf8 == ["config.envs[1] ('BAD')"]
    assert set(found.dropped) == {"config.mounts[1].recursive_read_only", "config.CDI_devices",
                                  "config.image.user_specified_image"}
    assert set(found.security) == {"config.mounts[1].recursive_read_only", "config.CDI_devices"}


def test_a_request_v1alpha2_can_carry_has_no_findings() -> None:
    found = inspect(v1.CreateContainerRequest(config=v1.ContainerConfig(
        envs=[v1.KeyValue(key="OK", value=b"fine")], mounts=[v1.Mount(container_path="/a")],
        image=v1.ImageSpec(image="x"))))
    assert (found.bad_utf8, found.dropped, found.security) == ([], [], [])
