"""cri_proxy/recorder/redact_json.py: secrets inside the JSON documents runtimes return (verbose info)."""

from __future__ import annotations

from typing import Any

from cri_proxy.recorder.redact_json import REDACTED, label_matches, redact_dict, walk_json
from cri_proxy.recorder.redact_policy import DEFAULT_POLICY, RedactionPolicy


def info() -> dict[str, Any]:
    return {
        "config": {"envs": [{"key": "DB_PASSWORD", "value": "s3cret"}, {"key": "EMPTY", "value": ""}],
                   "annotations": {"a": "1"}, "labels": {"team-secret": "x", "app": "web"}},
        "runtimeSpec": {"process": {"env": ["PATH=/bin", "TOKEN=abc", "NOVALUE"]}},
        "registry": {"configs": [{"auth": {"username": "bob", "password": "hunter2", "auth": ""}}]},
    }


def test_the_default_policy_redacts_env_and_registry_auth() -> None:
    doc, found = info(), []
    walk_json(doc, "", DEFAULT_POLICY, found)
    assert doc["config"]["envs"] == [{"key": "DB_PASSWORD", "value": REDACTED}, {"key": "EMPTY", "value": ""}]
    assert doc["runtimeSpec"]["process"]["env"] == [f"PATH={REDACTED}", f"TOKEN={REDACTED}", "NOVALUE"]
    assert doc["registry"]["configs"][0]["auth"] == {"username": REDACTED, "password": REDACTED, "auth": ""}
    assert doc["config"]["annotations"] == {"a": "1"} and doc["config"]["labels"]["team-secret"] == "x"
    assert sorted(found) == ["config.envs[].value", "registry.configs[].auth.password",
                             "registry.configs[].auth.username", "runtimeSpec.process.env[]",
                             "runtimeSpec.process.env[]"]


def test_annotations_and_label_globs_when_asked() -> None:
    doc, found = info(), []
    walk_json(doc, "", RedactionPolicy(annotations=True, label_globs=("*secret*",)), found)
    assert doc["config"]["annotations"] == {"a": REDACTED}
    assert doc["config"]["labels"] == {"team-secret": REDACTED, "app": "web"}
    assert {"config.annotations{}", "config.labels{}"} <= set(found)


def test_redact_dict_and_label_matches() -> None:
    mapping = {"k": "v", "empty": "", "n": 3}
    assert redact_dict(mapping, lambda key: True) is True
    assert mapping == {"k": REDACTED, "empty": "", "n": 3}
    assert redact_dict({"k": "v"}, lambda key: False) is False
    assert label_matches(("*secret*", "x"), "my-secret-key") and not label_matches(("x",), "y")
