"""The relay's one protobuf varint reader (model/protowire.py), against protobuf's own encoding."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from cri_proxy.model.protowire import WireError, read_varint


def protobuf_varint(value: int) -> bytes:
    """`value` as protobuf writes it: a UInt64Value is the key byte 0x08, then the varint (proto3
    leaves a zero out, whose varint is one zero byte)."""
    return wrappers_pb2.UInt64Value(value=value).SerializeToString()[1:] or b"\x00"


VALUES = [0, 1, 127, 128, 300, 16383, 16384, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_reads_what_protobuf_writes_between_other_bytes(value: int, kind: type) -> None:
    encoded = protobuf_varint(value)
    data = kind(b"\xff\xff" + encoded + b"\x05")
    assert read_varint(data, 2, len(data)) == (value, 2 + len(encoded))
    assert read_varint(data, 2, 2 + len(encoded)) == (value, 2 + len(encoded))  # `end` right after it


def test_a_negative_int32_takes_the_full_ten_bytes() -> None:
    encoded = wrappers_pb2.Int32Value(value=-1).SerializeToString()[1:]  # sign-extended to 64 bits
    assert len(encoded) == 10 and read_varint(encoded, 0, 10) == (2**64 - 1, 10)


@pytest.mark.parametrize(("data", "end", "why"), [
    (b"", 0, "truncated varint"),
    (b"\x80", 1, "truncated varint"),
    (b"\xac\x02", 1, "truncated varint"),  # the rest lies past `end`
    (b"\x05", 0, "truncated varint"),  # nothing before `end`
    (b"\xff" * 10 + b"\x01", 11, "varint longer than ten bytes"),
])
def test_a_varint_cut_short_or_too_long_is_a_wire_error(data: bytes, end: int, why: str) -> None:
    with pytest.raises(WireError, match=why):
        read_varint(data, 0, end)
