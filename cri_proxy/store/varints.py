"""Many protobuf varints at once, read and written by the protobuf runtime's C code.

A stats delta (store/statsdelta.py) reads and writes thousands of numbers a reply; a Python
loop over their bytes costs about a microsecond each, the protobuf runtime (upb) a tenth
of that. So the numbers go through a two-field message of our own, built from a
descriptor at first use: `repeated uint64` for the numbers as the body holds them, and
`repeated sint64` (zigzag) for the residuals, which are mostly small and of either sign.
A packed repeated field's payload is exactly the varints one after the other, so the
body's bytes go in and out without a copy of ours beyond the field's tag and length.
"""

from __future__ import annotations

from functools import cache
from typing import Any

_UNSIGNED, _SIGNED = 1, 2  # the fields' numbers
INT64 = 1 << 63


@cache
def _message_class() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="cri_proxy/store/varints.proto", package="cri_proxy.store",
                                               syntax="proto3")
    message = proto.message_type.add(name="Varints")
    message.field.add(name="unsigned", number=_UNSIGNED, type=field.TYPE_UINT64, label=field.LABEL_REPEATED)
    message.field.add(name="signed", number=_SIGNED, type=field.TYPE_SINT64, label=field.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("cri_proxy.store.Varints"))


def uvarint(value: int) -> bytes:
    """One unsigned varint (for the few lengths a delta's sections need)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data: bytes, i: int) -> tuple[int, int]:
    """(value, index after it); IndexError past the end."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _payload(serialized: bytes) -> bytes:
    """A packed field's payload: the message less its one tag byte and its length."""
    if not serialized:
        return b""
    i = 1
    while serialized[i] & 0x80:
        i += 1
    return serialized[i + 1:]


def pack(values: list[int], signed: bool = False) -> bytes:
    """The varints of `values` one after the other (zigzag when signed); ValueError when one
    is out of the field's range (uint64, or int64 when signed)."""
    message = _message_class()()
    (message.signed if signed else message.unsigned).extend(values)
    return _payload(message.SerializeToString())


def unpack(payload: bytes, signed: bool = False) -> list[int]:
    """The numbers of varints one after the other; ValueError when they do not parse."""
    number = _SIGNED if signed else _UNSIGNED
    message = _message_class()()
    from google.protobuf.message import DecodeError

    try:
        message.ParseFromString(uvarint(number << 3 | 2) + uvarint(len(payload)) + payload)
    except DecodeError as exc:
        raise ValueError(f"varints that do not parse: {exc}") from None
    return list(message.signed if signed else message.unsigned)
