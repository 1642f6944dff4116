"""Redaction: secrets are blanked in the raw message bytes before a call is stored.

The writer thread calls `redact_call` before anything is written, so neither the stored
bytes nor the JSON decoded from them hold a secret. A message that may carry one is parsed,
its secret fields are replaced with `[redacted]` (keys, and every other field, are kept),
and it is re-encoded; the call gets a note such as

    redacted: request[0] auth.username, auth.password

(every note starts with `NOTE_PREFIX`; `is_redacted` tells the writer to flag the call).
Only non-empty values are replaced and named, so an absent secret stays absent. A message
that may carry a secret but cannot be inspected (it does not parse, or it is compressed)
has its bytes dropped (`b""`) and is noted as such: what cannot be checked is not stored.
Non-CRI paths and messages whose type cannot reach a redacted field are left untouched,
without being parsed. A call whose method is unknown (the tap could not read its request
headers, as after a gap in the bytes it was given) keeps no message bytes at all.
`request_bytes`/`response_bytes` keep the sizes seen on the wire. Which fields hold secrets,
and which message types can reach one, is recorder.redact_fields'.

What `RedactionPolicy()` redacts by default, in both CRI versions:
- registry credentials: `PullImageRequest.auth` username, password, auth, identity_token,
  registry_token (server_address is kept);
- container environment values: `ContainerConfig.envs[].value` wherever a ContainerConfig
  travels (CreateContainerRequest);
- the same two inside the JSON strings of verbose `info` maps (ContainerStatus,
  PodSandboxStatus, ImageStatus, Status responses): containerd puts the container's CRI
  config (`config.envs[].value`) and OCI spec (`runtimeSpec.process.env`, "KEY=VALUE" becomes
  "KEY=[redacted]") there, and its own config, registry credentials included, in Status.
  Values that are not JSON are kept as they are; any JSON object holding a non-empty
  password/auth/identitytoken/registry_token (any spelling) loses those and its username.
  An image's own config (`imageSpec.config.Env` in ImageStatus info) is kept: it is part of
  the image, readable by anyone who can pull it.
The v1 env value is `bytes`: it becomes b"[redacted]" (base64 in the decoded JSON). The
Exec/Attach/PortForward response URLs carry single-use, short-lived tokens and are kept.
Wider (off by default): ExecSync output, exec command arguments, annotation values, label
values whose key matches a glob. Narrower: env values can be kept; registry credentials are
kept only with the deliberately alarming `keep_registry_credentials_in_clear`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages.decode import method_types
from cri_proxy.model.call import Direction, Message, RecordedCall
from cri_proxy.recorder.bodies import BodyMemo, Kind
from cri_proxy.recorder.redact_fields import may_hold_secrets, sensitive_types, walk
from cri_proxy.recorder.redact_json import REDACTED as REDACTED  # named here by replay.compare and the tests
from cri_proxy.recorder.redact_policy import DEFAULT_POLICY, RedactionPolicy

_REQUEST = Direction.REQUEST  # bound once: an Enum member off its class is a metaclass lookup

if TYPE_CHECKING:
    from cri_proxy.recorder.prepared import PreparedCall

NOTE_PREFIX = "redacted:"

MAX_PATHS = 1024  # paths whose redaction needs are remembered


def is_redacted(call: RecordedCall) -> bool:
    """Whether redaction changed (or dropped) any of the call's messages."""
    return any(note.startswith(NOTE_PREFIX) for note in call.notes)


RedactFn = Callable[[RecordedCall], RecordedCall]


class RedactStage:
    """The pipeline's redact peer: runs first on the writer's thread, so neither the stored
    bytes nor the JSON decoded from them hold a secret. `redact` replaces the policy's
    function (tests use it to change bytes).

    With the policy's own function, a call on a path whose messages cannot hold a redacted
    field (Version, List*...) is passed on as it is, known per path after its first call; and a
    body equal to one redacted before (the same reply to every ContainerStatus of a container)
    gets what its redaction gave then (recorder/bodies.py), instead of being parsed again."""

    name = "redact"

    def __init__(self, policy: RedactionPolicy = DEFAULT_POLICY, redact: RedactFn | None = None) -> None:
        self.policy = policy
        self.memo: BodyMemo[Redacted] = BodyMemo()
        self._redact = redact or functools.partial(redact_call, policy=policy, memo=self.memo)
        self._clean: dict[str, bool] | None = {} if redact is None else None  # path -> nothing to redact

    def process(self, item: PreparedCall) -> PreparedCall:
        call = item.call
        clean = self._clean
        if clean is not None and call.path:
            known = clean.get(call.path)
            if known is None:
                if len(clean) >= MAX_PATHS:  # paths are the clients' to choose: bounded
                    clean.clear()
                types = method_types(call.path)
                known = clean[call.path] = types is None or not may_hold_secrets(types, self.policy)
            if known:  # what redact_call would hand back: the very call
                return item
        redacted = self._redact(drop_unattributed(call))  # raising drops the call: nothing unredacted is stored
        if redacted is not call:  # a redaction function hands back the very call when it blanked nothing
            item.redacted = item.redacted or _fingerprint(redacted) != _fingerprint(call)
            item.call = redacted
            item.restart()
        return item


def _fingerprint(call: RecordedCall) -> tuple[object, ...]:
    """What redaction may change: message bodies, metadata, trailers, status message."""
    return (
        [m.data for m in call.messages],
        list(call.request_metadata),
        list(call.response_metadata),
        list(call.trailers),
        call.status_message,
    )


def drop_unattributed(call: RecordedCall) -> RecordedCall:
    """A call whose method is unknown (its request headers were unreadable: HPACK state lost
    after a gap, or no `:path`) cannot be redacted by type, so none of its message bytes are
    kept: any of them could carry a secret. Sizes stay; the note says why."""
    if call.path or not any(m.data for m in call.messages):
        return call
    messages = [dataclasses.replace(m, data=b"") for m in call.messages]
    note = f"{NOTE_PREFIX} method unknown, every message dropped ({len(messages)})"
    return dataclasses.replace(call, messages=messages, notes=[*call.notes, note])


def redact_call(call: RecordedCall, policy: RedactionPolicy = DEFAULT_POLICY,
                memo: BodyMemo[Redacted] | None = None) -> RecordedCall:
    """The call with its secrets blanked: a new RecordedCall, or `call` itself when
    nothing needed redacting. The input call and its messages are not modified. `memo`
    (one per policy) keeps what recent bodies' redaction gave, by their bytes."""
    if not call.path:
        return drop_unattributed(call)
    types = method_types(call.path)
    if types is None or not may_hold_secrets(types, policy):
        return call
    messages: list[Message] = []
    notes: list[str] = []
    for message in call.messages:
        is_request = message.direction == _REQUEST
        cls = types.request if is_request else types.response
        redacted, note = _redact_message(cls, message, policy, memo, (call.path, is_request))
        messages.append(redacted)
        if note is not None:
            notes.append(note)
    if not notes:
        return call
    return dataclasses.replace(call, messages=messages, notes=[*call.notes, *notes])


# What redacting one body gave: its new bytes (None: unchanged) and what the note says of it
# ("auth.username, auth.password", "unparseable, dropped"; None: nothing was redacted).
Redacted = tuple["bytes | None", "str | None"]


def _redact_message(cls: type[ProtoMessage], message: Message, policy: RedactionPolicy,
                    memo: BodyMemo[Redacted] | None = None, kind: Kind = ("", False)) -> tuple[Message, str | None]:
    if cls.DESCRIPTOR.full_name not in sensitive_types(policy):
        return message, None
    label = f"{Direction(message.direction).value}[{message.index}]"
    if message.compressed:
        return dataclasses.replace(message, data=b""), f"{NOTE_PREFIX} {label} compressed, dropped"
    known = None if memo is None else memo.find(kind, message.data)
    if known is not None:
        data, what = known[1]
    else:
        data, what = _redact_body(cls, message.data, policy)
        if memo is not None:
            memo.add(kind, message.data, (data, what))
    if what is None:
        return message, None
    return dataclasses.replace(message, data=message.data if data is None else data), f"{NOTE_PREFIX} {label} {what}"


def _redact_body(cls: type[ProtoMessage], data: bytes, policy: RedactionPolicy) -> Redacted:
    """The body of a message of type `cls` with its secrets blanked (see `Redacted`)."""
    try:
        parsed = cls.FromString(data)
    except DecodeError:
        return b"", "unparseable, dropped"
    found: list[str] = []
    walk(parsed, "", policy, found)
    if not found:
        return None, None
    return parsed.SerializeToString(), ", ".join(dict.fromkeys(found))
