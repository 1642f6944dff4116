"""redact_call: secrets leave no trace in stored bytes, notes or decoded JSON; nothing else moves."""

from __future__ import annotations

import base64
import json
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages.decode import decode_message
from cri_proxy.model.call import Direction, Message, RecordedCall
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.redact import (
    DEFAULT_POLICY,
    MAX_PATHS,
    REDACTED,
    RedactionPolicy,
    RedactStage,
    is_redacted,
    redact_call,
)

pytestmark = pytest.mark.timeout(20)

VERSIONS = [pytest.param(v1, id="v1"), pytest.param(v1alpha2, id="v1alpha2")]
AUTH = {
    "username": "regUser-7f3a",
    "password": "Pa55w0rd-registry-9c1e",
    "auth": base64.b64encode(b"regUser-7f3a:Pa55w0rd-registry-9c1e").decode(),
    "identity_token": "idtok-55aa-secret",
    "registry_token": "regtok-66bb-secret",
}
ENV_SECRETS = {"DB_PASSWORD": "db-pass-4d2b", "API_KEY": "apikey-0e0e-zz"}


def _path(m: ModuleType, method: str) -> str:
    service = "ImageService" if method in ("PullImage", "ImageStatus") else "RuntimeService"
    return f"/{m.DESCRIPTOR.package}.{service}/{method}"


def _call(path: str, *messages: ProtoMessage | bytes, responses: int = 0) -> RecordedCall:
    """A call whose first messages are requests and whose last `responses` are responses."""
    call = RecordedCall(conn_id=1, stream_id=1, started_at=0.0, path=path)
    n_req = len(messages) - responses
    for i, msg in enumerate(messages):
        data = msg if isinstance(msg, bytes) else msg.SerializeToString()
        direction = Direction.REQUEST if i < n_req else Direction.RESPONSE
        call.add_message(Message(direction, i if i < n_req else i - n_req, 0.0, data))
    return call


def _assert_secret_free(call: RecordedCall, secrets: list[str]) -> None:
    """No secret, as text or base64, in any message's bytes, the notes, or the decoded JSON."""
    for secret in secrets:
        forms = [secret.encode(), base64.b64encode(secret.encode())]
        for message in call.messages:
            decoded = json.dumps(decode_message(call.path, message.direction, message.data))
            for form in forms:
                assert form not in message.data, (secret, message)
                assert form.decode() not in decoded, (secret, decoded)
        for form in forms:
            assert all(form.decode() not in note for note in call.notes), call.notes


def _parsed(call: RecordedCall, index: int, cls: type[ProtoMessage]) -> Any:
    return cls.FromString(call.messages[index].data)


@pytest.mark.parametrize("m", VERSIONS)
def test_registry_credentials_redacted(m: ModuleType) -> None:
    request = m.PullImageRequest(image=m.ImageSpec(image="reg.example/app:1"))
    request.auth.MergeFrom(m.AuthConfig(server_address="reg.example", **AUTH))
    request.sandbox_config.metadata.name = "web"
    call = _call(_path(m, "PullImage"), request, m.PullImageResponse(image_ref="sha256:ab"), responses=1)
    before = [msg.data for msg in call.messages]

    out = redact_call(call)

    _assert_secret_free(out, list(AUTH.values()))
    fields = ", ".join(f"auth.{name}" for name in AUTH)
    assert out.notes == [f"redacted: request[0] {fields}"]
    assert is_redacted(out) and not is_redacted(call)
    expected = m.PullImageRequest()
    expected.CopyFrom(request)
    for name in AUTH:
        setattr(expected.auth, name, REDACTED)
    assert _parsed(out, 0, m.PullImageRequest) == expected  # server_address, image, config kept
    assert out.messages[1] is call.messages[1]
    assert [msg.data for msg in call.messages] == before and call.notes == []  # input untouched
    assert out.request_bytes == call.request_bytes  # the wire size stays


@pytest.mark.parametrize("m", VERSIONS)
def test_env_values_redacted_keys_kept(m: ModuleType) -> None:
    request = m.CreateContainerRequest(pod_sandbox_id="p" * 64)
    request.config.metadata.name = "app"
    request.config.image.image = "reg.example/app:1"
    request.config.command.extend(["/app", "--serve"])
    for key, value in ENV_SECRETS.items():
        request.config.envs.add(key=key, value=value.encode() if m is v1 else value)
    request.config.envs.add(key="EMPTY")
    request.sandbox_config.metadata.name = "web"

    out = redact_call(_call(_path(m, "CreateContainer"), request))

    _assert_secret_free(out, list(ENV_SECRETS.values()))
    assert out.notes == ["redacted: request[0] config.envs[].value"]
    got = _parsed(out, 0, m.CreateContainerRequest)
    marker: Any = REDACTED.encode() if m is v1 else REDACTED
    assert [(kv.key, kv.value) for kv in got.config.envs] == [
        ("DB_PASSWORD", marker), ("API_KEY", marker), ("EMPTY", marker[:0])
    ]  # fmt: skip
    del got.config.envs[:]
    del request.config.envs[:]
    assert got == request
    envs = decode_message(out.path, "request", out.messages[0].data)["config"]["envs"]  # type: ignore[index]
    assert [kv.get("value") for kv in envs] == [REDACTED, REDACTED, None]  # text in both versions' JSON


def _container_info() -> str:
    """Like containerd's ContainerStatus verbose info["info"]: the CRI config and the OCI spec."""
    return json.dumps({
        "sandboxID": "p" * 64, "pid": 4242,
        "config": {"metadata": {"name": "app"}, "envs": [
            {"key": key, "value": value} for key, value in ENV_SECRETS.items()
        ], "annotations": {"team": "payments"}},
        "runtimeSpec": {"process": {"args": ["/app"], "env": [
            "PATH=/usr/bin", *(f"{key}={value}" for key, value in ENV_SECRETS.items()), "BARE"
        ]}, "annotations": {"io.kubernetes.cri.container-type": "container"}},
    })  # fmt: skip


@pytest.mark.parametrize("m", VERSIONS)
def test_env_in_verbose_info_json_redacted(m: ModuleType) -> None:
    response = m.ContainerStatusResponse(info={"info": _container_info(), "note": "not {json"})
    response.status.id = "c" * 64

    out = redact_call(_call(_path(m, "ContainerStatus"), m.ContainerStatusRequest(verbose=True),
                            response, responses=1))  # fmt: skip

    _assert_secret_free(out, list(ENV_SECRETS.values()))
    assert out.notes == [
        "redacted: response[0] info{info}.config.envs[].value, info{info}.runtimeSpec.process.env[]"
    ]
    got = _parsed(out, 1, m.ContainerStatusResponse)
    info = json.loads(got.info["info"])
    assert info["config"]["envs"] == [{"key": key, "value": REDACTED} for key in ENV_SECRETS]
    assert info["runtimeSpec"]["process"]["env"] == [
        f"PATH={REDACTED}", *(f"{key}={REDACTED}" for key in ENV_SECRETS), "BARE"
    ]
    expected = json.loads(_container_info())
    for part in (info, expected):
        del part["config"]["envs"], part["runtimeSpec"]["process"]["env"]
    assert info == expected
    assert got.info["note"] == "not {json" and got.status == response.status


@pytest.mark.parametrize("m", VERSIONS)
def test_registry_credentials_in_runtime_status_info_redacted(m: ModuleType) -> None:
    """containerd's Status verbose info["config"] holds its CRI config, registry auth included."""
    registry = {"configs": {"reg.example": {"auth": {
        "username": AUTH["username"], "password": AUTH["password"],
        "auth": AUTH["auth"], "identitytoken": AUTH["identity_token"]}}}}  # fmt: skip
    config = json.dumps({"registry": registry, "sandboxImage": "pause:3.9"})
    response = m.StatusResponse(info={"config": config, "golang": '"go1.22"'})
    out = redact_call(_call("/" + m.DESCRIPTOR.package + ".RuntimeService/Status",
                            m.StatusRequest(verbose=True), response, responses=1))  # fmt: skip
    _assert_secret_free(out, [AUTH["password"], AUTH["auth"], AUTH["identity_token"], AUTH["username"]])
    got = json.loads(_parsed(out, 1, m.StatusResponse).info["config"])
    assert got["sandboxImage"] == "pause:3.9"
    assert set(got["registry"]["configs"]["reg.example"]["auth"].values()) == {REDACTED}


@pytest.mark.parametrize("m", VERSIONS)
def test_nothing_secret_leaves_the_call_as_it_is(m: ModuleType) -> None:
    pull = m.PullImageRequest(image=m.ImageSpec(image="nginx"), auth=m.AuthConfig(server_address="r"))
    create = m.CreateContainerRequest()
    create.config.envs.add(key="ONLY_KEY")
    listing = m.ListContainersResponse()
    listing.containers.add(id="c", annotations={"a": "b"}, labels={"secret-x": "y"})
    for call in (
        _call(_path(m, "PullImage"), pull),
        _call(_path(m, "CreateContainer"), create),
        _call(_path(m, "ListContainers"), m.ListContainersRequest(), listing, responses=1),
        _call(_path(m, "ContainerStatus"), m.ContainerStatusResponse(info={"k": "{}"}), responses=1),
    ):
        assert redact_call(call) is call


@pytest.mark.parametrize("m", VERSIONS)
def test_uninspectable_sensitive_messages_are_dropped(m: ModuleType) -> None:
    garbage = b"\x0a\xff\xff" + AUTH["password"].encode()
    out = redact_call(_call(_path(m, "PullImage"), garbage))
    assert out.messages[0].data == b"" and out.notes == ["redacted: request[0] unparseable, dropped"]

    create = v1.CreateContainerRequest()
    create.config.envs.add(key="K", value=b"\xff" + ENV_SECRETS["API_KEY"].encode())
    out = redact_call(_call(_path(m, "CreateContainer"), create))
    if m is v1alpha2:  # a string field that is not UTF-8: v1alpha2 cannot parse it
        assert out.messages[0].data == b"" and out.notes == ["redacted: request[0] unparseable, dropped"]
    _assert_secret_free(out, [ENV_SECRETS["API_KEY"]])

    compressed = _call(_path(m, "CreateContainer"), b"\x1f\x8b whatever")
    compressed.messages[0].compressed = True
    out = redact_call(compressed)
    assert out.messages[0].data == b"" and out.notes == ["redacted: request[0] compressed, dropped"]


@pytest.mark.parametrize("m", VERSIONS)
def test_insensitive_messages_are_not_inspected(m: ModuleType) -> None:
    bad = _call(_path(m, "ListContainers"), b"\xff\xff", b"\xff", responses=1)
    bad.messages[1].compressed = True
    assert redact_call(bad) is bad


@pytest.mark.parametrize(
    "path",
    ["/containerd.services.images.v1.Images/Create", "/grpc.health.v1.Health/Check",
     "/runtime.v1.RuntimeService/CheckpointPod"],
)  # fmt: skip
def test_non_cri_paths_untouched(path: str) -> None:
    call = _call(path, b"password=" + AUTH["password"].encode())
    policy = RedactionPolicy(exec_output=True, exec_cmd=True, annotations=True, label_globs=("*",))
    assert redact_call(call, policy) is call


# --- wider and narrower policies -------------------------------------------------------------


@pytest.mark.parametrize("m", VERSIONS)
def test_exec_output_and_cmd(m: ModuleType) -> None:
    request = m.ExecSyncRequest(container_id="c", cmd=["sh", "-c", "curl -u u:topsecret-cmd"], timeout=5)
    response = m.ExecSyncResponse(stdout=b"token=topsecret-out", stderr=b"err-secret", exit_code=3)
    call = _call(_path(m, "ExecSync"), request, response, responses=1)
    assert redact_call(call) is call  # default: exec is kept

    out = redact_call(call, RedactionPolicy.from_options(redact=["exec-output", "exec-cmd"]))
    _assert_secret_free(out, ["topsecret-cmd", "topsecret-out", "err-secret"])
    assert list(_parsed(out, 0, m.ExecSyncRequest).cmd) == ["sh", REDACTED, REDACTED]
    got = _parsed(out, 1, m.ExecSyncResponse)
    assert (got.stdout, got.stderr, got.exit_code) == (REDACTED.encode(), REDACTED.encode(), 3)
    assert out.notes == ["redacted: request[0] cmd[1:]", "redacted: response[0] stdout, stderr"]
    stream = _call(_path(m, "Exec"), m.ExecRequest(container_id="c", cmd=["env", "X=topsecret-cmd"]))
    _assert_secret_free(redact_call(stream, RedactionPolicy(exec_cmd=True)), ["topsecret-cmd"])


@pytest.mark.parametrize("m", VERSIONS)
def test_annotations_and_label_globs(m: ModuleType) -> None:
    request = m.RunPodSandboxRequest()
    request.config.metadata.name = "web"
    request.config.annotations["vault.example/token"] = "ann-secret-1"
    request.config.labels.update({"secret-token": "label-secret-2", "app": "web"})
    call = _call(_path(m, "RunPodSandbox"), request)
    assert redact_call(call) is call

    policy = RedactionPolicy.from_options(redact=["annotations"], label_globs=["secret-*"])
    out = redact_call(call, policy)
    _assert_secret_free(out, ["ann-secret-1", "label-secret-2"])
    got = _parsed(out, 0, m.RunPodSandboxRequest)
    assert dict(got.config.annotations) == {"vault.example/token": REDACTED}
    assert dict(got.config.labels) == {"secret-token": REDACTED, "app": "web"}
    assert out.notes == ["redacted: request[0] config.labels{}, config.annotations{}"]

    listing = m.ListPodSandboxResponse()
    listing.items.add(id="p", annotations={"a": "ann-secret-3"}, labels={"secret-x": "label-secret-4"})
    filtered = m.ListPodSandboxRequest()
    filtered.filter.label_selector["secret-x"] = "label-secret-4"
    out = redact_call(_call(_path(m, "ListPodSandbox"), filtered, listing, responses=1), policy)
    _assert_secret_free(out, ["ann-secret-3", "label-secret-4"])

    status = m.ContainerStatusResponse(info={"info": _container_info()})
    out = redact_call(_call(_path(m, "ContainerStatus"), status, responses=1), policy)
    _assert_secret_free(out, ["payments", *ENV_SECRETS.values()])


def test_stream_messages_are_labelled_by_index() -> None:
    events = [v1.ContainerEventResponse(container_id=f"c{i}") for i in range(3)]
    events[2].pod_sandbox_status.annotations["k"] = "ann-secret-5"
    call = _call("/runtime.v1.RuntimeService/GetContainerEvents", v1.GetEventsRequest(), *events, responses=3)
    out = redact_call(call, RedactionPolicy(annotations=True))
    assert out.notes == ["redacted: response[2] pod_sandbox_status.annotations{}"]
    assert out.messages[1] is call.messages[1]
    _assert_secret_free(out, ["ann-secret-5"])


@pytest.mark.parametrize("m", VERSIONS)
def test_narrowing(m: ModuleType) -> None:
    create = m.CreateContainerRequest()
    create.config.envs.add(key="K", value=b"kept-env" if m is v1 else "kept-env")
    create_call = _call(_path(m, "CreateContainer"), create)
    assert redact_call(create_call, RedactionPolicy.from_options(no_redact=["env"])) is create_call

    pull = m.PullImageRequest(auth=m.AuthConfig(password="kept-pass"))
    pull_call = _call(_path(m, "PullImage"), pull)
    clear = RedactionPolicy.from_options(keep_registry_credentials_in_clear=True)
    assert redact_call(pull_call, clear) is pull_call
    assert redact_call(create_call, clear) is not create_call  # env still redacted


def test_a_call_without_a_method_keeps_no_message_bytes() -> None:
    """The tap lost its HPACK state (a gap): no path, so no message type to redact by."""
    body = v1.PullImageRequest(auth=v1.AuthConfig(**AUTH)).SerializeToString()
    call = RecordedCall(1, 5, 0.0, "", messages=[Message(Direction.REQUEST, 0, 0.0, body),
                                                 Message(Direction.RESPONSE, 0, 0.1, b"\x0a\x03abc")],
                        request_bytes=len(body), response_bytes=5, notes=["request headers unreadable"])
    for policy in (DEFAULT_POLICY, RedactionPolicy(keep_registry_credentials_in_clear=True, env_values=False)):
        out = redact_call(call, policy)
        assert [m.data for m in out.messages] == [b"", b""] and is_redacted(out)
        assert out.notes == ["request headers unreadable", "redacted: method unknown, every message dropped (2)"]
        assert (out.request_bytes, out.response_bytes) == (len(body), 5)  # the sizes seen on the wire stay
    assert call.messages[0].data == body  # the input is not modified
    empty = RecordedCall(1, 7, 0.0, "")
    assert redact_call(empty) is empty  # nothing to drop, nothing to note


def _create_with_secrets(m: ModuleType) -> ProtoMessage:
    request = m.CreateContainerRequest(pod_sandbox_id="p" * 64)
    for key, value in ENV_SECRETS.items():
        request.config.envs.add(key=key, value=value.encode() if m is v1 else value)
    return request


@pytest.mark.parametrize("m", VERSIONS)
def test_a_repeated_body_is_redacted_once_and_as_before(m: ModuleType) -> None:
    """The stage's memo: a body equal to one it redacted gets that redaction, not a second
    parse; the stored bytes and the note are what redacting it afresh gives, for each call."""
    stage = RedactStage()
    path = _path(m, "CreateContainer")
    body = _create_with_secrets(m).SerializeToString()
    items = [PreparedCall.of(_call(path, bytes(body))) for _ in range(3)]
    fresh = redact_call(_call(path, bytes(body)))
    for item in items:
        out = stage.process(item).call
        _assert_secret_free(out, list(ENV_SECRETS.values()))
        assert out.notes == fresh.notes == ["redacted: request[0] config.envs[].value"]
        assert out.messages[0].data == fresh.messages[0].data and item.redacted
    assert (stage.memo.misses, stage.memo.hits) == (1, 2)
    unparseable = stage.process(PreparedCall.of(_call(path, b"\xff\xff"))).call
    again = stage.process(PreparedCall.of(_call(path, b"\xff\xff"))).call
    assert again.messages[0].data == unparseable.messages[0].data == b""
    assert again.notes == unparseable.notes == ["redacted: request[0] unparseable, dropped"]


def test_paths_without_secrets_pass_untouched_and_are_remembered_boundedly() -> None:
    """A Version call (no field to redact) comes back as the very call; the stage remembers
    that per path, at most MAX_PATHS paths (a client picks its paths), and still redacts the
    calls of a path that needs it after forgetting."""
    stage = RedactStage()
    version = PreparedCall.of(_call(_path(v1, "Version"), v1.VersionRequest(version="v1")))
    call = version.call
    assert stage.process(version).call is call and not version.redacted
    for i in range(MAX_PATHS + 5):
        item = PreparedCall.of(_call(f"/other.Service/M{i}", b"anything"))
        assert stage.process(item).call.messages[0].data == b"anything"
    secret = stage.process(PreparedCall.of(_call(_path(v1, "CreateContainer"), _create_with_secrets(v1)))).call
    _assert_secret_free(secret, list(ENV_SECRETS.values()))
