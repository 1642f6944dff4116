"""cri_proxy/recorder/redact_fields.py: which CRI message types can reach a redacted field under a
policy, and the walk that blanks those fields in a parsed message and names them."""

from __future__ import annotations

import pytest

from cri_proxy.messages.decode import method_types
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.recorder.redact_fields import may_hold_secrets, sensitive_types, walk
from cri_proxy.recorder.redact_json import REDACTED
from cri_proxy.recorder.redact_policy import DEFAULT_POLICY, RedactionPolicy

pytestmark = pytest.mark.timeout(20)


def test_the_sensitive_types_are_those_that_reach_a_redacted_field() -> None:
    found = sensitive_types(DEFAULT_POLICY)
    assert {"runtime.v1.PullImageRequest", "runtime.v1.AuthConfig", "runtime.v1.CreateContainerRequest",
            "runtime.v1.ContainerConfig", "runtime.v1alpha2.PullImageRequest"} <= found
    assert "runtime.v1.VersionRequest" not in found and "runtime.v1.ExecSyncResponse" not in found
    assert "runtime.v1.ExecSyncResponse" in sensitive_types(RedactionPolicy(exec_output=True))


def test_may_hold_secrets_looks_at_both_of_a_methods_types() -> None:
    pull, version = (method_types(f"/runtime.v1.{s}") for s in ("ImageService/PullImage", "RuntimeService/Version"))
    assert pull is not None and version is not None
    assert may_hold_secrets(pull, DEFAULT_POLICY) and not may_hold_secrets(version, DEFAULT_POLICY)
    status = method_types("/runtime.v1.RuntimeService/ContainerStatus")
    assert status is not None and may_hold_secrets(status, DEFAULT_POLICY)  # its verbose info JSON


def test_walk_blanks_the_non_empty_secrets_and_names_them() -> None:
    msg = v1.CreateContainerRequest(config=v1.ContainerConfig(
        envs=[v1.KeyValue(key="TOKEN", value=b"s3cret"), v1.KeyValue(key="EMPTY", value=b"")],
        command=["sh"], args=["-c", "echo"]))
    found: list[str] = []
    walk(msg, "request[0] ", DEFAULT_POLICY, found)
    assert found == ["request[0] config.envs[].value"]
    assert [(kv.key, kv.value) for kv in msg.config.envs] == [("TOKEN", REDACTED.encode()), ("EMPTY", b"")]  # v1: bytes
    auth = v1.PullImageRequest(image=v1.ImageSpec(image="x"), auth=v1.AuthConfig(username="u", password="p",
                                                                                 server_address="reg"))
    found = []
    walk(auth, "", DEFAULT_POLICY, found)
    assert found == ["auth.username", "auth.password"]
    assert (auth.auth.username, auth.auth.password, auth.auth.server_address) == (REDACTED, REDACTED, "reg")
