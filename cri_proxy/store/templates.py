"""Where a keyframe entry's numbers are: protobuf wire format read without a schema.

A stats delta (store/statsdelta.py) keeps an entry of a reply as its numbers when it has the
layout of the keyframe's entry: the same bytes between its varints (tags, lengths, strings)
and varints of the same lengths. `template` works that layout out once per keyframe entry:
nested messages are walked; a length-delimited field that is all printable ASCII, or does
not parse as a message, is bytes. A Template then reads an entry's varints with one regular
expression match (compiled when a writer first needs it) and writes them back with one
%-format, so neither costs a Python step a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from cri_proxy.store.varints import read_uvarint, unpack

MAX_DEPTH = 8
PRINTABLE = bytes(range(0x20, 0x7F))
_NOTHING = slice(0, 0)  # appended to the itemgetters, so that they always give a tuple

Field = tuple[int, int, int, int]  # (field start, value start, value end, wire type)


def fields(data: bytes, start: int, end: int) -> list[Field] | None:
    """The fields of data[start:end] read as a protobuf message, or None when it is not one."""
    out = []
    i = start
    try:
        while i < end:
            first = i
            tag, i = read_uvarint(data, i)
            wire = tag & 7
            if tag >> 3 == 0:
                return None
            if wire == 0:
                value = i
                _, i = read_uvarint(data, i)
            elif wire == 2:
                size, value = read_uvarint(data, i)
                i = value + size
            elif wire == 1 or wire == 5:
                value = i
                i += 8 if wire == 1 else 4
            else:
                return None
            if i > end:
                return None
            out.append((first, value, i, wire))
    except IndexError:
        return None
    return out


def _numbers(data: bytes, start: int, end: int, depth: int, path: tuple[int, ...],
             spans: list[tuple[int, int]], paths: list[tuple[int, ...]]) -> bool:
    """Appends the spans of data[start:end]'s varints (nested messages walked) and their
    field paths; False (nothing appended) when it is not a message."""
    found = fields(data, start, end)
    if found is None:
        return False
    for first, value, after, wire in found:
        number = read_uvarint(data, first)[0] >> 3
        if wire == 0:
            spans.append((value, after))
            paths.append((*path, number))
        elif wire == 2 and depth < MAX_DEPTH and after > value and data[value:after].translate(None, PRINTABLE):
            mark = len(spans)
            if not _numbers(data, value, after, depth + 1, (*path, number), spans, paths):
                del spans[mark:], paths[mark:]
    return True


@dataclass(slots=True)
class Template:
    """Where one keyframe entry's varints are, and what is between them."""

    count: int  # of its varints
    values: list[int]
    shape: int  # entries of one shape have their varints at the same field paths
    keys: tuple[tuple[int, ...], ...]  # each varint's field path from the entry (a column's key)
    head: bytes  # the entry's bytes before its first varint (the id, the labels)
    source: bytes  # a regular expression of the rest of an entry of this layout, whose groups are its varints
    size: int  # of the varints' bytes, joined
    form: bytes  # the entry as a %-format: the bytes between the varints, a %b for each (and two)
    cuts: Callable[[bytes], tuple[bytes, ...]]  # each varint's slice of the joined varints (and two empty ones)
    compiled: re.Pattern[bytes] | None = None  # `source`, compiled when first needed (by a writer)

    def layout(self) -> re.Pattern[bytes]:
        if self.compiled is None:
            self.compiled = re.compile(self.source, re.DOTALL)
        return self.compiled


def _varint_class(size: int) -> bytes:
    """A varint of `size` bytes: continuation bits on all but the last."""
    return b"([\x80-\xff]{%d}[\x00-\x7f])" % (size - 1)


def template(entry: bytes, shapes: dict[tuple[object, ...], int], part: tuple[int, ...] = ()) -> Template:
    spans: list[tuple[int, int]] = []
    paths: list[tuple[int, ...]] = []
    _numbers(entry, 0, len(entry), 0, (), spans, paths)
    between = [entry[a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(entry)],
                                          strict=True)]
    layout = b"".join(_varint_class(e - s) + re.escape(after) for (s, e), after in zip(spans, between[1:], strict=True))
    cuts, at = [], 0
    for s, e in spans:
        cuts.append(slice(at, at + e - s))
        at += e - s
    return Template(count=len(spans), values=unpack(b"".join(entry[s:e] for s, e in spans)),
                    shape=shapes.setdefault((part, *paths), len(shapes)),
                    keys=tuple((*part, *path) for path in paths), head=between[0], source=layout,
                    size=at, form=b"%b".join(piece.replace(b"%", b"%%") for piece in between) + b"%b%b",
                    cuts=itemgetter(*cuts, _NOTHING, _NOTHING))


def aligned(t: Template, body: bytes, start: int, end: int) -> bytes | None:
    """The varints' bytes of body[start:end] when it has the template's layout, else None."""
    if not body.startswith(t.head, start):
        return None
    match = (t.compiled or t.layout()).fullmatch(body, start + len(t.head), end)
    return None if match is None else b"".join(match.groups())
