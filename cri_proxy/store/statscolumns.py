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

from collections.abc import Iterator, Sequence
from itertools import accumulate, chain, repeat
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


def _residuals(column: Sequence[int], base: Sequence[int]) -> tuple[int, list[int]]:
    """(the column's word, its residuals): each number less its keyframe entry's, then, when
    that is smaller, less the row before's (the word's low bit), over the column's common
    divisor (the rest of the word)."""
    moved = list(map(sub, column, base))
    steps = [moved[0], *map(sub, moved[1:], moved[:-1])]
    flag = sum(map(abs, steps)) < sum(map(abs, moved))
    kept = steps if flag else moved
    divisor = gcd(*kept)
    if 1 < divisor < _MAX_DIVISOR:
        kept = list(map(floordiv, kept, repeat(divisor)))
    else:
        divisor = 1
    return divisor << 1 | flag, kept


def _numbers(word: int, column: list[int], base: Sequence[int]) -> Iterator[int]:
    if word > 3:
        column = list(map(mul, column, repeat(word >> 1)))
    return map(add, accumulate(column) if word & 1 else column, base)


def columns(rows: Rows) -> tuple[list[int], list[int]]:
    """(a word per column, the residuals column after column), a column a varint of one
    shape (STATS_MARKER's deltas): a column of timestamps moves by the same 10 s in every
    row, a counter's growth differs per row; memory moves in 4 KiB pages."""
    words: list[int] = []
    out: list[int] = []
    for group, templates in rows.values():
        if not templates[0].count:
            continue
        for column, base in zip(zip(*group, strict=True), zip(*[t.values for t in templates], strict=True), strict=True):
            word, kept = _residuals(column, base)
            words.append(word)
            out += kept
    return words, out


def merged(rows: Rows) -> tuple[list[int], list[int]]:
    """As `columns`, but a column holds the numbers of one field path (from the entry) of
    every shape: a pod's containers, and the entries split field by field, are rows of the
    same columns however their pods differ (NESTED_MARKER's deltas)."""
    numbers: dict[tuple[int, ...], list[int]] = {}
    bases: dict[tuple[int, ...], list[int]] = {}
    for group, templates in rows.values():
        if not templates[0].count:
            continue
        for key, column, base in zip(templates[0].keys, zip(*group, strict=True),
                                     zip(*[t.values for t in templates], strict=True), strict=True):
            if key in numbers:
                numbers[key] += column
                bases[key] += base
            else:
                numbers[key] = list(column)
                bases[key] = list(base)
    words: list[int] = []
    out: list[int] = []
    for key, merged_column in numbers.items():
        word, kept = _residuals(merged_column, bases[key])
        words.append(word)
        out += kept
    return words, out


def _groups(aligned: list[Template]) -> dict[int, list[Template]]:
    groups: dict[int, list[Template]] = {}
    for t in aligned:
        group = groups.get(t.shape)
        if group is None:
            group = groups[t.shape] = []
        group.append(t)
    return groups


def _in_order(aligned: list[Template], rows: dict[int, Iterator[tuple[int, ...]]]) -> list[int]:
    out: list[int] = []
    for t in aligned:
        out += next(rows[t.shape])
    return out


def values(aligned: list[Template], words: list[int], residuals: list[int]) -> list[int]:
    """The aligned entries' numbers from their columns' residuals (`columns`)."""
    rows: dict[int, Iterator[tuple[int, ...]]] = {}
    at = f = 0
    for shape, templates in _groups(aligned).items():
        size = len(templates)
        columns = []
        for base in (zip(*[t.values for t in templates], strict=True) if templates[0].count else ()):
            column = residuals[at:at + size]
            if len(column) != size or f >= len(words):
                raise ValueError("a stats delta's residuals run out")
            columns.append(_numbers(words[f], column, base))
            at += size
            f += 1
        rows[shape] = zip(*columns, strict=True) if columns else iter([()] * size)
    if at != len(residuals) or f != len(words):
        raise ValueError("a stats delta has residuals left over")
    return _in_order(aligned, rows)


def unmerged(aligned: list[Template], words: list[int], residuals: list[int]) -> list[int]:
    """The aligned entries' numbers from their merged columns' residuals (`merged`)."""
    groups = _groups(aligned)
    places: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # a column's (shape, varint) in order
    bases: dict[int, list[tuple[int, ...]]] = {}
    for shape, templates in groups.items():
        if templates[0].count:
            bases[shape] = list(zip(*[t.values for t in templates], strict=True))
            for k, key in enumerate(templates[0].keys):
                places.setdefault(key, []).append((shape, k))
    found: dict[int, list[list[int]]] = {shape: [[] for _ in base] for shape, base in bases.items()}
    if len(places) != len(words):
        raise ValueError("a stats delta's columns do not match its keyframe's")
    at = 0
    for word, where in zip(words, places.values(), strict=True):
        base = list(chain.from_iterable(bases[shape][k] for shape, k in where))
        column = residuals[at:at + len(base)]
        if len(column) != len(base):
            raise ValueError("a stats delta's residuals run out")
        at += len(base)
        numbers = list(_numbers(word, column, base))
        i = 0
        for shape, k in where:
            size = len(groups[shape])
            found[shape][k] = numbers[i:i + size]
            i += size
    if at != len(residuals):
        raise ValueError("a stats delta has residuals left over")
    rows: dict[int, Iterator[tuple[int, ...]]] = {
        shape: zip(*found[shape], strict=True) if shape in found else iter([()] * len(templates))
        for shape, templates in groups.items()}
    return _in_order(aligned, rows)
