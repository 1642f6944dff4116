"""A stats delta's numbers as residuals, column by column (store/statsdelta.py).

The aligned entries of one shape (their varints at the same field paths: a container with a
memory limit, one without) are rows of a table whose columns are one field each. Each
number is kept as its difference from the keyframe entry's; a column whose rows moved alike
(timestamps: every container read 10 s later than in the keyframe, give or take the
microseconds between two reads) as the differences from the row before; divided by the
column's common divisor (memory moves in 4 KiB pages). The work is on whole columns
(`map`, `zip`, `accumulate`), not a Python step a number.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate, repeat
from math import gcd
from operator import add, floordiv, mul, sub

from cri_proxy.store.templates import Template

_MAX_DIVISOR = 1 << 62

Rows = dict[int, tuple[list[tuple[int, ...]], list[Template]]]

def rows(aligned: list[Template], values: list[int]) -> Rows:
    """The aligned entries' numbers and templates, grouped by shape (in order)."""
    rows: Rows = {}
    at = 0
    for t in aligned:
        group = rows.get(t.shape)
        if group is None:
            group = rows[t.shape] = ([], [])
        group[0].append(tuple(values[at:at + t.count]))
        group[1].append(t)
        at += t.count
    if at != len(values):
        raise ValueError("varints that do not match the keyframe's")
    return rows


def columns(rows: Rows) -> tuple[list[int], list[int]]:
    """(a word per column, the residuals column after column): each number less its
    keyframe entry's, then, when that is smaller, less the row before's (the word's low
    bit): a column of timestamps moves by the same 10 s in every row, a counter's growth
    differs per row. The rest of the word is the column's common divisor (memory moves in
    4 KiB pages)."""
    words: list[int] = []
    out: list[int] = []
    for group, templates in rows.values():
        if not templates[0].count:
            continue
        for column, base in zip(zip(*group, strict=True), zip(*[t.values for t in templates], strict=True), strict=True):
            moved = list(map(sub, column, base))
            steps = [moved[0], *map(sub, moved[1:], moved[:-1])]
            flag = sum(map(abs, steps)) < sum(map(abs, moved))
            kept = steps if flag else moved
            divisor = gcd(*kept)
            if 1 < divisor < _MAX_DIVISOR:
                kept = list(map(floordiv, kept, repeat(divisor)))
            else:
                divisor = 1
            words.append(divisor << 1 | flag)
            out += kept
    return words, out


def values(aligned: list[Template], words: list[int], residuals: list[int]) -> list[int]:
    """The aligned entries' numbers from their columns' residuals."""
    groups: dict[int, list[Template]] = {}
    for t in aligned:
        group = groups.get(t.shape)
        if group is None:
            group = groups[t.shape] = []
        group.append(t)
    rows: dict[int, Iterator[tuple[int, ...]]] = {}
    at = f = 0
    for shape, templates in groups.items():
        size = len(templates)
        columns = []
        for base in (zip(*[t.values for t in templates], strict=True) if templates[0].count else ()):
            column = residuals[at:at + size]
            if len(column) != size or f >= len(words):
                raise ValueError("a stats delta's residuals run out")
            word = words[f]
            if word > 3:
                column = list(map(mul, column, repeat(word >> 1)))
            columns.append(map(add, accumulate(column) if word & 1 else column, base))
            at += size
            f += 1
        rows[shape] = zip(*columns, strict=True) if columns else iter([()] * size)
    if at != len(residuals) or f != len(words):
        raise ValueError("a stats delta has residuals left over")
    out: list[int] = []
    for t in aligned:
        out += next(rows[t.shape])
    return out
