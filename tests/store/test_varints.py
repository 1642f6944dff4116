"""cri_proxy/store/varints.py: numbers to varints and back through the protobuf runtime, at
the ends of their ranges, and out-of-range or damaged input refused."""

from __future__ import annotations

import pytest

from cri_proxy.store import varints


def test_unsigned_and_signed_numbers_go_through_as_they_were() -> None:
    unsigned = [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1]
    assert varints.pack(unsigned)[:4] == b"\x00\x01\x7f\x80"  # the varints one after the other
    assert varints.unpack(varints.pack(unsigned)) == unsigned
    signed = [0, -1, 1, -(2**63), 2**63 - 1, -300]
    assert varints.pack(signed, signed=True)[:3] == b"\x00\x01\x02"  # zigzag: 0, -1, 1
    assert varints.unpack(varints.pack(signed, signed=True), signed=True) == signed
    assert varints.pack([]) == b"" and varints.unpack(b"") == []


def test_numbers_out_of_range_and_cut_varints_are_refused() -> None:
    with pytest.raises(ValueError):
        varints.pack([2**64])
    with pytest.raises(ValueError):
        varints.pack([-1])
    with pytest.raises(ValueError):
        varints.pack([2**63], signed=True)
    with pytest.raises(ValueError, match="do not parse"):
        varints.unpack(b"\x01\x80")


def test_one_varint_is_written_and_read_in_python() -> None:
    assert varints.uvarint(300) == b"\xac\x02"
    assert varints.read_uvarint(b"\x00\xac\x02\x05", 1) == (300, 3)
    with pytest.raises(IndexError):
        varints.read_uvarint(b"\x80", 0)
