"""Where secrets lie in CRI messages: the field handlers that blank them in a parsed protobuf
message, and which message types can reach one at all (computed once per policy).

recorder.redact parses a message only when `may_hold_secrets` says its method's types can
hold a field the policy redacts, then hands it to `walk`; what each handler does is
described in recorder.redact's docstring. Apart from the stage so the protobuf descriptor
walk reads on its own.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages.decode import MethodTypes
from cri_proxy.pb.runtime.v1 import api_pb2 as v1_pb2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2_pb2
from cri_proxy.recorder.redact_json import REDACTED, label_matches, redact_dict, walk_json
from cri_proxy.recorder.redact_policy import RedactionPolicy

AUTH_FIELDS = ("username", "password", "auth", "identity_token", "registry_token")

# --- protobuf messages ------------------------------------------------------------------

Handler = Callable[[ProtoMessage, FieldDescriptor, Any, str, RedactionPolicy, list[str]], None]


def walk(msg: ProtoMessage, prefix: str, policy: RedactionPolicy, found: list[str]) -> None:
    desc = msg.DESCRIPTOR
    if desc.name == "AuthConfig" and policy.registry_auth:
        for name in AUTH_FIELDS:
            if getattr(msg, name, ""):
                setattr(msg, name, REDACTED)
                found.append(prefix + name)
        return
    sensitive = sensitive_types(policy)
    for fd, value in msg.ListFields():
        path = prefix + fd.name
        handler = _field_handler(desc.name, fd, policy)
        if handler is not None:
            handler(msg, fd, value, path, policy, found)
        elif fd.message_type is not None and fd.message_type.full_name in sensitive:
            if fd.is_repeated:
                for item in value:
                    walk(item, path + "[].", policy, found)
            else:
                walk(value, path + ".", policy, found)


def _field_handler(owner: str, fd: FieldDescriptor, policy: RedactionPolicy) -> Handler | None:
    """The handler that redacts field `fd` of message type `owner` under `policy`, if any."""
    name = fd.name
    if _is_map(fd):
        if name == "info" and policy.inspects_json:
            return _redact_info
        if name == "annotations" and policy.annotations:
            return _redact_map_values
        if name in ("labels", "label_selector") and policy.label_globs:
            return _redact_labels
        return None
    if name == "envs" and policy.env_values and fd.message_type is not None:
        return _redact_envs if fd.message_type.name == "KeyValue" else None
    if owner == "ExecSyncResponse" and name in ("stdout", "stderr") and policy.exec_output:
        return _redact_scalar
    if owner in ("ExecSyncRequest", "ExecRequest") and name == "cmd" and policy.exec_cmd:
        return _redact_cmd_args
    return None


def _redact_envs(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                 policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    for kv in value:
        if kv.value:
            kv.value = REDACTED.encode() if isinstance(kv.value, bytes) else REDACTED
            found.append(path + "[].value")


def _redact_scalar(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                   policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    setattr(msg, fd.name, REDACTED.encode() if isinstance(value, bytes) else REDACTED)
    found.append(path)


def _redact_cmd_args(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                     policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    if any(value[1:]):
        value[1:] = [REDACTED if arg else arg for arg in value[1:]]
        found.append(path + "[1:]")


def _redact_map_values(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                       policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    if redact_dict(value, lambda key: True):
        found.append(path + "{}")


def _redact_labels(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                   policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    if redact_dict(value, functools.partial(label_matches, policy.label_globs)):
        found.append(path + "{}")


def _redact_info(msg: ProtoMessage, fd: FieldDescriptor, value: Any, path: str,
                 policy: RedactionPolicy, found: list[str]) -> None:  # fmt: skip
    for key in list(value):
        try:
            doc = json.loads(value[key])
        except ValueError:
            continue  # not JSON: nothing we know how to look into
        if not isinstance(doc, (dict, list)):
            continue
        before = len(found)
        walk_json(doc, f"{path}{{{key}}}.", policy, found)
        if len(found) > before:
            value[key] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


# --- which message types can carry a redacted field ---------------------------------------


def _all_messages() -> Iterator[Descriptor]:
    pending = [
        *v1_pb2.DESCRIPTOR.message_types_by_name.values(),
        *v1alpha2_pb2.DESCRIPTOR.message_types_by_name.values(),
    ]
    while pending:
        desc = pending.pop()
        if not desc.GetOptions().map_entry:
            yield desc
            pending.extend(desc.nested_types)


@functools.lru_cache(maxsize=512)
def may_hold_secrets(types: MethodTypes, policy: RedactionPolicy) -> bool:
    """Whether the request or response type of a method holds a field `policy` redacts."""
    sensitive = sensitive_types(policy)
    return any(cls.DESCRIPTOR.full_name in sensitive for cls in (types.request, types.response))


@functools.lru_cache(maxsize=16)
def sensitive_types(policy: RedactionPolicy) -> frozenset[str]:
    """Full names of the message types that hold, at any depth, a field `policy` redacts."""
    descs = list(_all_messages())
    found = {
        d.full_name
        for d in descs
        if (d.name == "AuthConfig" and policy.registry_auth)
        or any(_field_handler(d.name, fd, policy) is not None for fd in d.fields)
    }
    grew = True
    while grew:  # fixed point: a type is sensitive if one of its message fields is
        grew = False
        for d in descs:
            if d.full_name not in found and any(
                fd.message_type is not None and fd.message_type.full_name in found
                for fd in d.fields
            ):
                found.add(d.full_name)
                grew = True
    return frozenset(found)
