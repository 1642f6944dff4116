"""The stored JSON of a large List*/Stats reply, written element by element.

The writer stores each new body's JSON as compact text. Built the plain way (the whole
message as one `MessageToDict` tree, then `json.dumps`), a 1 MB ListContainerStats reply
(1,700 containers) holds about 20 MB of dicts and strings for a moment, which set the
recorder process's peak RSS on its own (measured: +21 MB of VmHWM for that one body). Most
large CRI replies are a message whose only set fields are lists of messages (`containers`,
`items`, `stats`, `images`...), so their text is the list's elements' texts joined: each
element is turned into a dict and dumped on its own, and only the texts (2 MB for that
reply) are held, then joined once, after the parsed message is let go (+4.8-5.0 MB of VmHWM
measured for the same body).

The text is exactly what the plain way writes: the same keys in the same order (protobuf's
JSON visits the set fields in field-number order), the same `_bytes` markers (per element),
the same separators and escaping. A message of any other shape, a decoder other than the
stock one, or bytes that do not parse go the plain way (`PreparedCall.decoded`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from cri_proxy.messages import decode as messages

if TYPE_CHECKING:
    from cri_proxy.recorder.prepared import PreparedCall

# Below this a body's JSON tree is small: the plain way, which also caches small results.
STREAM_MIN_BYTES = 64 << 10
_SEPARATORS = (",", ":")


def dumps(doc: object) -> str:
    """The stored form of decoded JSON (the writer's)."""
    return json.dumps(doc, separators=_SEPARATORS)


def payload_json(item: PreparedCall, index: int) -> str | None:
    """The JSON text stored with message `index` of the call (None: no JSON)."""
    message = item.call.messages[index]
    decoder = item.decoder
    if (decoder is not None and len(message.data) >= STREAM_MIN_BYTES and not message.compressed
            and len(message.data) <= decoder.max_bytes and getattr(decoder, "_decode", None) is messages.decode_message
            and not item.decoded_already(index)):
        text = stream(item.call.path, message.direction.value, message.data)
        if text is not None:
            return text
    decoded = item.decoded(index)
    return None if decoded is None else dumps(decoded)


def stream(path: str, direction: str, data: bytes) -> str | None:
    """`dumps(decode_message(path, direction, data))` built one list element at a time;
    None when the message is not made of lists of messages only (or does not parse)."""
    cls = messages.message_class(path, direction)
    if cls is None:
        return None
    try:
        msg = cls.FromString(data)
    except DecodeError:
        return None
    fields = msg.ListFields()
    if not all(_streamable(field) for field, _ in fields):
        return None
    pieces = _pieces(fields)
    del msg, fields  # the parsed message (protobuf's own memory) goes before the text is joined
    return "".join(pieces)  # joined once: no intermediate copy of the whole text


def _pieces(fields: Sequence[tuple[FieldDescriptor, Any]]) -> list[str]:
    pieces = ["{"]
    for n, (field, values) in enumerate(fields):
        pieces.append(f"{',' if n else ''}{json.dumps(field.name)}:[")
        for i, value in enumerate(values):
            if i:
                pieces.append(",")
            pieces.append(_element(value))
        pieces.append("]")
    pieces.append("}")
    return pieces


def _streamable(field: FieldDescriptor) -> bool:
    desc = field.message_type
    return field.is_repeated and desc is not None and not desc.GetOptions().map_entry \
        and not desc.full_name.startswith("google.protobuf.")


def _element(value: ProtoMessage) -> str:
    return dumps(messages.message_json(value))
