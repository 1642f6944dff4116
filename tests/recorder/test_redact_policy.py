"""cri_proxy/recorder/redact_policy.py: what is redacted, from the CLI's names, in one log line."""

from __future__ import annotations

import pytest

from cri_proxy.recorder.redact_policy import DEFAULT_POLICY, RedactionPolicy

pytestmark = pytest.mark.timeout(20)


def test_from_options_and_describe() -> None:
    assert RedactionPolicy.from_options() == DEFAULT_POLICY
    policy = RedactionPolicy.from_options(redact=["exec-output", "annotations"], no_redact=["env"],
                                          label_globs=["*secret*"])  # fmt: skip
    assert policy == RedactionPolicy(env_values=False, exec_output=True, annotations=True,
                                     label_globs=("*secret*",))  # fmt: skip
    with pytest.raises(ValueError, match="unknown redact option"):
        RedactionPolicy.from_options(redact=["everything"])
    with pytest.raises(ValueError, match="keep_registry_credentials_in_clear"):
        RedactionPolicy.from_options(no_redact=["auth"])
    assert DEFAULT_POLICY.describe() == "redacting: registry-auth, env"
    loud = RedactionPolicy(keep_registry_credentials_in_clear=True, env_values=False)
    assert loud.describe() == "redacting: nothing (REGISTRY CREDENTIALS ARE RECORDED IN CLEAR)"
    assert "labels *secret*" in policy.describe()


def test_what_makes_json_worth_inspecting() -> None:
    assert DEFAULT_POLICY.registry_auth and DEFAULT_POLICY.inspects_json
    bare = RedactionPolicy(env_values=False, keep_registry_credentials_in_clear=True)
    assert not bare.registry_auth and not bare.inspects_json
    assert RedactionPolicy(env_values=False, keep_registry_credentials_in_clear=True, label_globs=("x",)).inspects_json
