"""Decoding recorded CRI messages to JSON: the readable view of the raw bytes.

The recorder's decode peer (`JsonDecoder`, on the writer's thread) calls `decode_message`
for the messages of a recorded call; nothing here runs on the call path. The method table is built once, at import, from the descriptors of
both generated CRI packages (`runtime.v1` and `runtime.v1alpha2`), so every RPC the protos
define is known and nothing is listed by hand.

Choices, so readers of the JSON know what they are looking at:

- The JSON is protobuf's canonical JSON mapping (`json_format.MessageToDict`) with the proto
  field names (`pod_sandbox_id`, not `podSandboxId`). Fields at their default value are left
  out, so an empty message decodes to `{}`; enums are names; 64-bit integers are strings.
- `bytes` fields (v1's `KeyValue.value` env values, `ExecSyncResponse.stdout`/`stderr`) that
  hold valid UTF-8 are written as that text, the others as base64 (protobuf's mapping), and
  every JSON object holding a bytes field says which in a sibling `_bytes` object:
  `{"stdout": "ok\\n", "stderr": "/wE=", "_bytes": {"stdout": "text", "stderr": "base64"}}`.
  SQL can then read probe output and env values with `json_extract` (Debian's sqlite3 has no
  base64 function), and the marker keeps the JSON unambiguous: `"aGk="` is text when
  `_bytes` says so, base64 when it says so or when there is no `_bytes` at all (the JSON of
  recordings made before the markers, see storage/README.md). `protobuf_json` turns either form
  back into protobuf's own mapping, which parses (`json_format.ParseDict`) into the message.
  The raw bytes stay the source of truth; the JSON is a faithful view of them.
- A path that is not a CRI method of either version (containerd's own API, health checks,
  reflection, a CRI method newer than our protos) decodes to None: there is nothing to say.
- Bytes that do not parse as the method's message type decode to a marker instead of
  raising: `{"_error": "<why>", "_type": "runtime.v1.PullImageRequest"}`. No CRI field name
  starts with an underscore, so the marker cannot be mistaken for a message. See `is_error`.
"""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.model.cri import METHODS as CRI_METHODS
from cri_proxy.pb.runtime.v1 import api_pb2 as v1_pb2
from cri_proxy.pb.runtime.v1alpha2 import api_pb2 as v1alpha2_pb2

log = logging.getLogger(__name__)

ERROR_KEY = "_error"
TYPE_KEY = "_type"
BYTES_KEY = "_bytes"  # sibling of bytes fields: {"stdout": "text", "stderr": "base64"}
TEXT = "text"
BASE64 = "base64"


@dataclass(frozen=True, slots=True)
class MethodTypes:
    """The message classes of one CRI method."""

    path: str  # "/runtime.v1.RuntimeService/Version"
    request: type[ProtoMessage]
    response: type[ProtoMessage]
    server_streaming: bool


def _message_class(type_name: str) -> type[ProtoMessage]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(type_name))


# Both CRI versions' modules register their files in protobuf's default pool.
_POOL = v1_pb2.DESCRIPTOR.pool
_ = v1alpha2_pb2  # imported for that registration

# The message classes of every method of model.cri's table (the one method table), by path.
METHODS: dict[str, MethodTypes] = {
    path: MethodTypes(path, _message_class(info.request_type), _message_class(info.response_type),
                      info.server_streaming)
    for path, info in CRI_METHODS.items()
}


def method_types(path: str) -> MethodTypes | None:
    """The request and response classes of a CRI method path, or None for other paths."""
    return METHODS.get(path)


def message_class(path: str, direction: str) -> type[ProtoMessage] | None:
    """The class of a message going `direction` ("request"/"response") on `path`."""
    types = METHODS.get(path)
    if types is None:
        return None
    if direction == "request":
        return types.request
    if direction == "response":
        return types.response
    raise ValueError(f"direction must be 'request' or 'response', not {direction!r}")


def parse_message(path: str, direction: str, data: bytes) -> ProtoMessage | None:
    """The parsed message, None for a non-CRI path; raises DecodeError on bad bytes."""
    cls = message_class(path, direction)
    if cls is None:
        return None
    return cls.FromString(data)


def decode_message(path: str, direction: str, data: bytes) -> dict[str, Any] | None:
    """The message as protobuf JSON (proto field names), None for a non-CRI path.

    `direction` is "request" or "response" (a `Direction` works too); `data` is the
    uncompressed message without its 5-byte gRPC prefix. Never raises for bad bytes: they
    give `{"_error": ..., "_type": ...}`.
    """
    cls = message_class(path, direction)
    if cls is None:
        return None
    try:
        parsed = cls.FromString(data)
    except DecodeError as exc:
        return error_marker(cls.DESCRIPTOR.full_name, f"undecodable: {exc}")
    return message_json(parsed)


def message_json(msg: ProtoMessage) -> dict[str, Any]:
    """A parsed message as the recording's JSON: proto field names, UTF-8 bytes as text (each
    marked in `_bytes`)."""
    doc = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    _bytes_as_text(msg, doc)
    return doc


def _bytes_fields(desc: Descriptor) -> tuple[tuple[FieldDescriptor, ...], tuple[FieldDescriptor, ...]]:
    """A message type's singular bytes fields, and its message fields that can reach one."""
    known = _BYTES_PLAN.get(desc.full_name)
    if known is None:
        _BYTES_PLAN[desc.full_name] = ((), ())  # a recursive type reaches itself: no bytes by that path
        own = tuple(f for f in desc.fields if f.type == FieldDescriptor.TYPE_BYTES and not f.is_repeated)
        inner = tuple(f for f in desc.fields if f.message_type is not None and _reaches_bytes(f.message_type))
        known = _BYTES_PLAN[desc.full_name] = (own, inner)
    return known


def _reaches_bytes(desc: Descriptor) -> bool:
    if desc.full_name.startswith("google.protobuf."):  # well-known types have their own JSON
        return False
    own, inner = _bytes_fields(desc)
    return bool(own or inner)


# Per message type; CRI has singular bytes fields only (KeyValue.value, ExecSyncResponse's
# stdout/stderr): a repeated or map bytes field would stay base64 without a marker.
_BYTES_PLAN: dict[str, tuple[tuple[FieldDescriptor, ...], tuple[FieldDescriptor, ...]]] = {}


def _bytes_as_text(msg: ProtoMessage, doc: dict[str, Any]) -> None:
    """Rewrites `doc` (msg's JSON) in place: UTF-8 bytes as text, each marked in `_bytes`."""
    own, inner = _bytes_fields(msg.DESCRIPTOR)  # type: ignore[arg-type]  # upb's Descriptor is the same
    marks: dict[str, str] = {}
    for field in own:
        if field.name in doc:
            try:
                doc[field.name] = getattr(msg, field.name).decode("utf-8")
                marks[field.name] = TEXT
            except UnicodeDecodeError:
                marks[field.name] = BASE64
    for field in inner:
        sub = doc.get(field.name)
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if isinstance(sub, dict):
                for key, item in value.items():
                    if isinstance(item, ProtoMessage) and isinstance(sub.get(str(key)), dict):
                        _bytes_as_text(item, sub[str(key)])
        elif field.is_repeated:
            if isinstance(sub, list):
                for item, item_doc in zip(value, sub):
                    if isinstance(item_doc, dict):
                        _bytes_as_text(item, item_doc)
        elif isinstance(sub, dict):
            _bytes_as_text(value, sub)
    if marks:
        doc[BYTES_KEY] = marks


def protobuf_json(doc: Any) -> Any:
    """A copy of decoded JSON in protobuf's own mapping: text bytes back to base64 and the
    `_bytes` markers dropped, so `json_format.ParseDict` parses it. JSON without markers (as
    recorded before them) is already in that mapping and comes back equal."""
    if isinstance(doc, list):
        return [protobuf_json(item) for item in doc]
    if not isinstance(doc, dict):
        return doc
    marks = doc.get(BYTES_KEY)
    marks = marks if isinstance(marks, dict) else {}
    out = {}
    for key, value in doc.items():
        if key == BYTES_KEY:
            continue
        if marks.get(key) == TEXT and isinstance(value, str):
            out[key] = base64.b64encode(value.encode("utf-8")).decode("ascii")
        else:
            out[key] = protobuf_json(value)
    return out


def bytes_value(obj: dict[str, Any], key: str) -> bytes | None:
    """The bytes of field `key` of a decoded JSON object, in either form (None: absent)."""
    value = obj.get(key)
    if not isinstance(value, str):
        return None
    marks = obj.get(BYTES_KEY)
    if isinstance(marks, dict) and marks.get(key) == TEXT:
        return value.encode("utf-8")
    return base64.b64decode(value)


def error_marker(type_name: str, why: str) -> dict[str, Any]:
    """The JSON stored in place of a message that could not be decoded."""
    return {ERROR_KEY: why, TYPE_KEY: type_name}


def is_error(decoded: dict[str, Any] | None) -> bool:
    """Whether `decode_message` gave the undecodable marker."""
    return decoded is not None and ERROR_KEY in decoded


DecodeFn = Callable[[str, str, bytes], "dict[str, Any] | None"]
CACHE_ENTRIES = 2048
CACHE_MESSAGE_BYTES = 4096  # results kept for the identical messages of later calls, if this small


class JsonDecoder:
    """The recorder's decode peer: `decode_message` with its options, a cache and a guard.

    Messages larger than `max_bytes` (their bytes are not stored either) and compressed ones
    get no JSON. The kubelet repeats identical requests and the runtime identical answers
    (statuses, versions): small results are kept by the bytes' sha256, so those are decoded
    once. A decoder that raises (a replaced `decode`) gives None, logged once.
    """

    def __init__(self, decode: DecodeFn = decode_message, max_bytes: int = 1 << 20) -> None:
        self._decode = decode
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._failed = False

    def decode(self, path: str, direction: str, data: bytes, sha: str,
               compressed: bool = False) -> dict[str, Any] | None:
        """The message's JSON; the result is shared with later callers: do not modify it."""
        if compressed or len(data) > self.max_bytes:
            return None
        cache = self._cache
        key = f"{path} {direction} {sha}"
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        try:
            decoded = self._decode(path, direction, data)
        except Exception:
            if not self._failed:  # once per decoder: a broken decoder fails every call
                log.exception("%s %s: decoding failed; storing the bytes without JSON", path, direction)
                self._failed = True
            return None
        if len(data) <= CACHE_MESSAGE_BYTES:
            cache[key] = decoded
            if len(cache) > CACHE_ENTRIES:
                cache.popitem(last=False)
        return decoded
