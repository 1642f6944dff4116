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


def test_merged_columns_hold_one_field_path_of_every_shape_and_come_back() -> None:
    # Two shapes: a timestamp and two repeated containers' counters (field 6 twice), and the
    # same without the second container. Their timestamps make one column, their counters
    # another (the repeated field's two varints one after the other), in the order first seen.
    shapes: dict[tuple[object, ...], int] = {}
    two = b"\x08%c\x32\x02\x10\x01\x32\x02\x10\x02"
    one = b"\x08%c\x32\x02\x10\x03"
    base = [templates.template(two % 1, shapes), templates.template(one % 2, shapes),
            templates.template(two % 3, shapes)]
    assert base[0].shape == base[2].shape != base[1].shape
    assert base[0].keys == ((1,), (6, 2), (6, 2))
    flat = [11, 21, 32, 12, 43, 13, 51, 62]
    words, residuals = statscolumns.merged(statscolumns.rows(base, flat))
    # For each key, the first shape's rows (entries 0 and 2) a varint after the other, then the
    # second shape's (entry 1): timestamps 11-1, 13-3, 12-2 moved by 10, 10, 10: as steps, over
    # their divisor 10, 1 0 0; counters 21-1, 51-1, 32-2, 62-2, 43-3: 20 50 30 60 40, as steps
    # over 10, 2 3 -2 3 -2.
    assert words == [10 << 1 | 1, 10 << 1 | 1]
    assert residuals == [1, 0, 0, 2, 3, -2, 3, -2]
    assert statscolumns.unmerged(base, words, residuals) == flat
