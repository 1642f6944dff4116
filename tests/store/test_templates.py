"""cri_proxy/store/templates.py: the wire format read without a schema, and an entry's layout
told apart from another's by its bytes between the varints and its varints' lengths."""

from __future__ import annotations

from cri_proxy.store import templates


def test_fields_reads_wire_format_without_a_schema() -> None:
    data = b"\x08\x96\x01" + b"\x12\x02hi" + b"\x1d\x01\x02\x03\x04" + b"\x21" + bytes(8)
    assert templates.fields(data, 0, len(data)) == [(0, 1, 3, 0), (3, 5, 7, 2), (7, 8, 12, 5), (12, 13, 21, 1)]
    assert templates.fields(b"\x00\x01", 0, 2) is None  # field number 0
    assert templates.fields(b"\x08\x96", 0, 2) is None  # a varint cut short


def test_a_template_finds_nested_varints_and_matches_only_its_own_layout() -> None:
    # field 1: a string; field 2: a message holding a varint (300) and a string; field 3: 5
    entry = b"\x0a\x03abc" + b"\x12\x06\x08\xac\x02\x12\x01%" + b"\x18\x05"
    t = templates.template(entry, {})
    assert t.count == 2 and t.values == [300, 5] and t.head == b"\x0a\x03abc\x12\x06\x08"
    assert templates.aligned(t, b"xx" + entry, 2, 2 + len(entry)) == b"\xac\x02\x05"
    moved = entry.replace(b"\xac\x02", b"\xff\x7f")  # another number of the same length
    assert templates.aligned(t, moved, 0, len(moved)) == b"\xff\x7f\x05"
    assert t.form % t.cuts(b"\xff\x7f\x05") == moved  # written back, the % in the string kept
    assert templates.aligned(t, entry.replace(b"abc", b"abd"), 0, len(entry)) is None  # another string
    shorter = entry.replace(b"\x08\xac\x02", b"\x08\x05\x00")  # same length, a varint of one byte
    assert templates.aligned(t, shorter, 0, len(shorter)) is None
