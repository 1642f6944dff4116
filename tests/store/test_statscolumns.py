"""cri_proxy/store/statscolumns.py: the aligned entries' numbers as column residuals and back,
each column kept as it is or as steps from the row before, whichever is smaller, divided by
its common divisor."""

from __future__ import annotations

from cri_proxy.store import statscolumns, templates


def test_columns_come_back_as_the_numbers_they_were() -> None:
    # Three entries of one layout: a timestamp, a counter, a memory figure in pages.
    base = [templates.template(b"\x08" + bytes([1 + i]) + b"\x10\x01\x18\x80\x20", {}) for i in range(3)]
    numbers = [1_000_000 + i * 37 + 10_000_000 for i in range(3)], [7, 900, 20], [4096 * 3, 4096 * 9, 4096]
    rows = list(zip(*numbers, strict=True))
    flat = [n for row in rows for n in row]
    words, residuals = statscolumns.columns(statscolumns.rows(base, flat))
    # Less the keyframe's (1 + i, 1, 4096): the timestamps as steps from the row before, the
    # counter as it moved, the memory as it moved in units of 8 KiB (its common divisor).
    assert words == [1 << 1 | 1, 1 << 1, 8192 << 1]
    assert residuals == [10_999_999, 36, 36, 6, 899, 19, 1, 4, 0]
    assert statscolumns.values(base, words, residuals) == flat
