"""Redaction inside the JSON strings of verbose `info` maps (see redact.py's docstring):
containerd puts a container's CRI config and OCI spec, and its own config with registry
credentials, there. Walks parsed JSON in place, naming what it blanked in `found`."""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cri_proxy.recorder.redact_policy import RedactionPolicy

REDACTED = "[redacted]"
# Secret keys in JSON (containerd's registry config, docker-style auth): snake, lower, camel.
JSON_AUTH_KEYS = frozenset(
    {"password", "auth", "identity_token", "identitytoken", "identityToken",
     "registry_token", "registrytoken", "registryToken"}
)  # fmt: skip



def walk_json(node: Any, prefix: str, policy: RedactionPolicy, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            walk_json(item, prefix.rstrip(".") + "[].", policy, found)
        return
    if not isinstance(node, dict):
        return
    if policy.registry_auth and _looks_like_auth(node):
        for key in (*JSON_AUTH_KEYS, "username"):
            if isinstance(node.get(key), str) and node[key]:
                node[key] = REDACTED
                found.append(prefix + key)
    for key, value in node.items():
        path = prefix + key
        if key == "envs" and policy.env_values and isinstance(value, list):
            for kv in value:
                if isinstance(kv, dict) and kv.get("value"):
                    kv["value"] = REDACTED
                    found.append(path + "[].value")
        elif key == "env" and policy.env_values and isinstance(value, list):
            _redact_env_strings(value, path, found)
        elif key == "annotations" and policy.annotations and isinstance(value, dict):
            if redact_dict(value, lambda k: True):
                found.append(path + "{}")
        elif key == "labels" and policy.label_globs and isinstance(value, dict):
            if redact_dict(value, functools.partial(label_matches, policy.label_globs)):
                found.append(path + "{}")
        else:
            walk_json(value, path + ".", policy, found)


def _looks_like_auth(node: dict[str, Any]) -> bool:
    return any(isinstance(node.get(key), str) and node[key] for key in JSON_AUTH_KEYS)


def _redact_env_strings(env: list[Any], path: str, found: list[str]) -> None:
    """OCI-style "KEY=VALUE" entries become "KEY=[redacted]"."""
    for i, entry in enumerate(env):
        if isinstance(entry, str):
            key, sep, val = entry.partition("=")
            if sep and val:
                env[i] = f"{key}={REDACTED}"
                found.append(path + "[]")



def redact_dict(mapping: Any, matches: Callable[[str], bool]) -> bool:
    """Replace the non-empty string values whose key `matches`; whether any was replaced."""
    changed = False
    for key in list(mapping):
        if isinstance(mapping[key], str) and mapping[key] and matches(key):
            mapping[key] = REDACTED
            changed = True
    return changed


def label_matches(globs: tuple[str, ...], key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, glob) for glob in globs)
