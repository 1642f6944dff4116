"""The protobuf wire format's varint, read in Python where protobuf is not loaded.

The relay process never imports protobuf (it must start fast and stay small), yet reads a few
facts from messages at the wire level: the v1-only fields of a translated request
(cri_proxy.proxy.bodycheck) and the pod facts fault rules match on (cri_proxy.proxy.podfacts).
Both walk keys and lengths with this one reader. It sits at the bottom layer so that others
without protobuf may share it; the store, which has protobuf, reads its thousands of numbers
a reply with the runtime's C code (cri_proxy.store.varints).
"""

from __future__ import annotations


class WireError(Exception):
    """The bytes are not a protobuf message."""


def read_varint(data: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at `data[pos]`, read no further than `end`: (value, position after it).
    WireError when `end` cuts it or it runs past ten bytes."""
    if pos < end and data[pos] < 0x80:  # most keys and lengths are one byte
        return data[pos], pos + 1
    value = shift = 0
    while pos < end and shift < 64:  # ten bytes at most: a 64-bit value's seven bits at a time
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    raise WireError("truncated varint" if pos >= end else "varint longer than ten bytes")
