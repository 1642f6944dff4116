"""decode_message over every RPC of both CRI versions, and call_ids for the lifecycle calls."""

from __future__ import annotations

import base64
import time
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages.decode import METHODS, bytes_value, decode_message, is_error, method_types, protobuf_json
from cri_proxy.model.call import Direction
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.recorder.ids import ID_KEYS, call_ids

pytestmark = pytest.mark.timeout(20)

VERSIONS = [pytest.param(v1, id="v1"), pytest.param(v1alpha2, id="v1alpha2")]


def _rpcs() -> list[tuple[str, str, Any]]:
    """(path, direction, message descriptor) for every RPC of both versions, from descriptors."""
    out = []
    for module in (v1, v1alpha2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                out.append((path, "request", method.input_type))
                out.append((path, "response", method.output_type))
    return out


RPCS = _rpcs()


def _fill(msg: ProtoMessage, depth: int = 0) -> ProtoMessage:
    """Set every field to a non-default value (two levels deep), to exercise the JSON."""
    for fd in msg.DESCRIPTOR.fields:
        if fd.containing_oneof is not None and msg.WhichOneof(fd.containing_oneof.name):
            continue
        entry = fd.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_fd = entry.fields_by_name["value"]
            if value_fd.message_type is None:
                getattr(msg, fd.name)["k"] = _scalar(value_fd)
            continue
        if fd.message_type is not None:
            if depth < 2:
                child = getattr(msg, fd.name).add() if fd.is_repeated else getattr(msg, fd.name)
                _fill(child, depth + 1)
                child.SetInParent()
        elif fd.is_repeated:
            getattr(msg, fd.name).append(_scalar(fd))
        else:
            setattr(msg, fd.name, _scalar(fd))
    return msg


def _scalar(fd: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return "text"
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return b"\x00\xffbytes"
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return True
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return fd.enum_type.values[-1].number
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return 1.5
    return 7


def test_method_table_covers_both_versions() -> None:
    assert len(METHODS) == len(RPCS) // 2
    assert method_types("/runtime.v1.ImageService/PullImage").request is v1.PullImageRequest  # type: ignore[union-attr]
    types = method_types("/runtime.v1alpha2.RuntimeService/Version")
    assert types is not None and types.response is v1alpha2.VersionResponse
    assert method_types("/runtime.v1.RuntimeService/GetContainerEvents").server_streaming  # type: ignore[union-attr]


@pytest.mark.parametrize(("path", "direction", "desc"), RPCS, ids=[f"{p}:{d}" for p, d, _ in RPCS])
def test_every_rpc_decodes(path: str, direction: str, desc: Any) -> None:
    assert decode_message(path, direction, b"") == {}
    cls = METHODS[path].request if direction == "request" else METHODS[path].response
    full = _fill(cls())
    decoded = decode_message(path, direction, full.SerializeToString())
    assert decoded is not None and not is_error(decoded)
    assert (decoded == {}) == (not cls.DESCRIPTOR.fields)
    # faithful: the JSON parses back into the very message it came from
    assert json_format.ParseDict(protobuf_json(decoded), cls()) == full
    assert cls.DESCRIPTOR.full_name == desc.full_name


def test_direction_enum_and_bad_direction() -> None:
    data = v1.VersionRequest(version="0.1.0").SerializeToString()
    path = "/runtime.v1.RuntimeService/Version"
    assert decode_message(path, Direction.REQUEST, data) == {"version": "0.1.0"}
    with pytest.raises(ValueError):
        decode_message(path, "sideways", data)


@pytest.mark.parametrize(
    "path",
    [
        "/containerd.services.tasks.v1.Tasks/Create",
        "/grpc.health.v1.Health/Check",
        "/runtime.v1.RuntimeService/NoSuchMethod",
        "/runtime.v1.RuntimeService/CheckpointPod",  # newer than the pinned protos
        "garbage",
    ],
)
def test_non_cri_paths_decode_to_none(path: str) -> None:
    assert decode_message(path, "request", b"\x0a\x01x") is None


def test_undecodable_bytes_give_a_marker() -> None:
    path = "/runtime.v1.RuntimeService/ListContainers"
    marker = decode_message(path, "response", b"\xff\xff\xff\xff")
    assert is_error(marker)
    assert marker == {"_error": marker["_error"], "_type": "runtime.v1.ListContainersResponse"}  # type: ignore[index]
    # a string field holding invalid UTF-8 is undecodable too
    bad_utf8 = b"\x0a\x02\xff\xfe"
    assert is_error(decode_message("/runtime.v1.RuntimeService/Version", "request", bad_utf8))
    assert not is_error(decode_message(path, "response", b""))


def test_utf8_bytes_fields_are_text_and_say_so_strings_are_text() -> None:
    config = {"metadata": {"name": "c"}, "envs": [{"key": "K", "value": "v"}]}
    v1_req = v1.CreateContainerRequest(config=json_format.ParseDict(config | {"envs": []}, v1.ContainerConfig()))
    v1_req.config.envs.add(key="K", value=b"v")
    v1_req.config.envs.add(key="RAW", value=b"\xff\xfe")
    v1_req.config.envs.add(key="EMPTY")
    alpha = v1alpha2.CreateContainerRequest(config=json_format.ParseDict(config, v1alpha2.ContainerConfig()))
    got_v1 = decode_message("/runtime.v1.RuntimeService/CreateContainer", "request", v1_req.SerializeToString())
    got_alpha = decode_message(
        "/runtime.v1alpha2.RuntimeService/CreateContainer", "request", alpha.SerializeToString()
    )
    assert got_v1 == {"config": {"metadata": {"name": "c"}, "envs": [
        {"key": "K", "value": "v", "_bytes": {"value": "text"}},
        {"key": "RAW", "value": base64.b64encode(b"\xff\xfe").decode(), "_bytes": {"value": "base64"}},
        {"key": "EMPTY"},
    ]}}  # fmt: skip
    assert got_alpha == {"config": config}  # v1alpha2's env value is a string: no marker
    envs = got_v1["config"]["envs"]  # type: ignore[index]
    assert [bytes_value(kv, "value") for kv in envs] == [b"v", b"\xff\xfe", None]


@pytest.mark.parametrize("m", VERSIONS)
def test_exec_output_as_text_or_base64(m: ModuleType) -> None:
    path = f"/{m.DESCRIPTOR.package}.RuntimeService/ExecSync"
    reply = m.ExecSyncResponse(stdout="héllo\n".encode(), stderr=b"\x00\xff", exit_code=3)
    got = decode_message(path, "response", reply.SerializeToString())
    assert got == {"stdout": "héllo\n", "stderr": "AP8=", "exit_code": 3,
                   "_bytes": {"stdout": "text", "stderr": "base64"}}  # fmt: skip
    assert json_format.ParseDict(protobuf_json(got), m.ExecSyncResponse()) == reply
    assert decode_message(path, "response", m.ExecSyncResponse(exit_code=1).SerializeToString()) == {"exit_code": 1}


def test_json_recorded_before_the_markers_reads_as_base64() -> None:
    """Older recordings hold protobuf's mapping (every bytes field base64, no `_bytes`)."""
    old = {"stdout": base64.b64encode(b"aGk=").decode(), "exit_code": 3}
    assert bytes_value(old, "stdout") == b"aGk="
    assert protobuf_json(old) == old
    # the same text is read as text only where a marker says so
    assert bytes_value({"stdout": "aGk=", "_bytes": {"stdout": "text"}}, "stdout") == b"aGk="
    assert bytes_value({"stdout": "aGk=", "_bytes": {"stdout": "base64"}}, "stdout") == b"hi"


def _containers_response(module: ModuleType, n: int) -> bytes:
    resp = module.ListContainersResponse()
    for i in range(n):
        c = resp.containers.add(id=f"{i:064x}", pod_sandbox_id=f"{i + n:064x}", state=1)
        c.image_ref = "sha256:" + "a" * 64
        c.created_at = 1_700_000_000_000_000_000 + i
        c.metadata.name, c.metadata.attempt = f"c{i}", 1
        c.image.image = "registry.k8s.io/pause:3.9"
        for key in ("container.name", "pod.name", "pod.namespace", "pod.uid"):
            c.labels[f"io.kubernetes.{key}"] = f"value-{i}"
        for key in ("container.hash", "container.restartCount", "pod.terminationGracePeriod"):
            c.annotations[f"io.kubernetes.{key}"] = f"value-{i}"
    return bytes(resp.SerializeToString())


def test_decode_speed_list_containers_100() -> None:
    """Not a benchmark gate: a sanity bound (and the number, with -s) for the writer's cost."""
    data = _containers_response(v1, 100)
    path = "/runtime.v1.RuntimeService/ListContainers"
    decoded = decode_message(path, "response", data)
    assert decoded is not None and len(decoded["containers"]) == 100
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        decode_message(path, "response", data)
    per_call_us = (time.perf_counter() - start) / rounds * 1e6
    print(f"decode ListContainersResponse x100 ({len(data)} bytes): {per_call_us:.0f} us")
    assert per_call_us < 100_000


# --- call_ids -------------------------------------------------------------------------------

POD = "a" * 64
CTR = "b" * 64


def _ids(module: ModuleType, method: str, request: ProtoMessage | None, response: ProtoMessage | None) -> dict[str, Any]:
    service = "ImageService" if "Image" in method else "RuntimeService"
    path = f"/{module.DESCRIPTOR.package}.{service}/{method}"
    direction_data = [(d, m) for d, m in (("request", request), ("response", response)) if m is not None]
    decoded = {d: decode_message(path, d, m.SerializeToString()) for d, m in direction_data}
    return call_ids(path, decoded.get("request"), decoded.get("response"))


def _expect(**values: str) -> dict[str, str | None]:
    return {key: values.get(key) for key in ID_KEYS}


@pytest.mark.parametrize("m", VERSIONS)
def test_ids_of_pod_and_container_lifecycle(m: ModuleType) -> None:
    meta = {"metadata": {"name": "web", "namespace": "prod", "uid": "u1"}}
    run = json_format.ParseDict({"config": meta}, m.RunPodSandboxRequest())
    assert _ids(m, "RunPodSandbox", run, m.RunPodSandboxResponse(pod_sandbox_id=POD)) == _expect(
        pod_sandbox_id=POD, pod_name="web", pod_namespace="prod"
    )
    assert _ids(m, "RunPodSandbox", run, None) == _expect(pod_name="web", pod_namespace="prod")
    create = json_format.ParseDict(
        {"pod_sandbox_id": POD, "sandbox_config": meta,
         "config": {"metadata": {"name": "nginx"}, "image": {"image": "sha256:" + "c" * 64}}},
        m.CreateContainerRequest(),
    )  # fmt: skip
    assert _ids(m, "CreateContainer", create, m.CreateContainerResponse(container_id=CTR)) == _expect(
        pod_sandbox_id=POD, container_id=CTR, image="sha256:" + "c" * 64, pod_name="web", pod_namespace="prod"
    )
    for method in ("StartContainer", "StopContainer", "RemoveContainer", "ContainerStatus", "ExecSync"):
        request = getattr(m, f"{method}Request")(container_id=CTR)
        assert _ids(m, method, request, None) == _expect(container_id=CTR)
    for method in ("StopPodSandbox", "RemovePodSandbox"):
        request = getattr(m, f"{method}Request")(pod_sandbox_id=POD)
        assert _ids(m, method, request, getattr(m, f"{method}Response")()) == _expect(pod_sandbox_id=POD)
    status = json_format.ParseDict({"status": {"id": POD, **meta}}, m.PodSandboxStatusResponse())
    assert _ids(m, "PodSandboxStatus", m.PodSandboxStatusRequest(pod_sandbox_id=POD), status) == _expect(
        pod_sandbox_id=POD, pod_name="web", pod_namespace="prod"
    )


@pytest.mark.parametrize("m", VERSIONS)
def test_ids_of_image_calls(m: ModuleType) -> None:
    pull = m.PullImageRequest(image=m.ImageSpec(image="nginx:1.25"))
    ref = "sha256:" + "d" * 64
    assert _ids(m, "PullImage", pull, m.PullImageResponse(image_ref=ref)) == _expect(image=ref)
    assert _ids(m, "PullImage", pull, None) == _expect(image="nginx:1.25")
    status = m.ImageStatusRequest(image=m.ImageSpec(image="nginx:1.25"))
    assert _ids(m, "ImageStatus", status, m.ImageStatusResponse()) == _expect(image="nginx:1.25")
    assert _ids(m, "RemoveImage", m.RemoveImageRequest(image=m.ImageSpec(image=ref)), None) == _expect(image=ref)


@pytest.mark.parametrize("m", VERSIONS)
def test_ids_not_guessed_for_lists_and_others(m: ModuleType) -> None:
    filtered = json_format.ParseDict({"filter": {"id": CTR, "pod_sandbox_id": POD}}, m.ListContainersRequest())
    assert _ids(m, "ListContainers", filtered, m.ListContainersResponse()) == _expect()
    assert _ids(m, "Version", m.VersionRequest(version="0.1.0"), None) == _expect()
    marker = {"_error": "undecodable", "_type": "x"}
    assert call_ids("/runtime.v1.RuntimeService/StartContainer", marker, None) == _expect()
    assert call_ids("/containerd.services.tasks.v1.Tasks/Start", {"container_id": CTR}, None) == _expect()
    assert call_ids("/runtime.v1.RuntimeService/StartContainer", None, None) == _expect()


# --- JsonDecoder (the recorder's decode peer) ----------------------------------------------


def test_json_decoder_decodes_once_per_small_message_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    import hashlib

    from cri_proxy.messages.decode import CACHE_MESSAGE_BYTES, JsonDecoder

    seen: list[bytes] = []

    def counting(path: str, direction: str, data: bytes) -> dict[str, Any] | None:
        seen.append(data)
        if data == b"boom":
            raise RuntimeError("a broken decoder")
        return decode_message(path, direction, data)

    path = "/runtime.v1.RuntimeService/ContainerStatus"
    small = v1.ContainerStatusRequest(container_id="c1").SerializeToString()
    big = v1.ContainerStatusRequest(container_id="c" * (CACHE_MESSAGE_BYTES + 10)).SerializeToString()
    decoder = JsonDecoder(counting, max_bytes=len(big))
    for data in (small, small, big, big):
        assert decoder.decode(path, "request", data, hashlib.sha256(data).hexdigest()) == \
            decode_message(path, "request", data)
    assert seen == [small, big, big]  # small results are kept, big ones decoded each time they are asked for
    too_big = big + b"\x00"
    assert decoder.decode(path, "request", too_big, hashlib.sha256(too_big).hexdigest()) is None
    assert decoder.decode(path, "request", small, "other", compressed=True) is None
    assert decoder.decode(path, "request", b"boom", "x") is None
    assert decoder.decode(path, "request", b"boom", "y") is None
    assert len([r for r in caplog.records if "decoding failed" in r.getMessage()]) == 1  # logged once
