"""A reply stored as its numbers' differences from its keyframe's (a *stats delta*).

A stats reply (ListContainerStats, ListPodSandboxStats) is a list of entries, one a
container or pod, whose bytes repeat the keyframe's entry for the same id except for its
numbers: timestamps, counters, gauges. A zstd frame against the keyframe pays a sequence
for every number that moved; the numbers themselves, taken as differences, are small and
alike from one entry to the next (each container's read time is its keyframe's plus the
same 10 s, give or take the microseconds between two reads).

No schema: the keyframe is parsed once as protobuf wire format (`Keyframe`): its top-level
fields are the entries, each with a template (store/templates.py: where its varints are).
An entry of the body is matched with the keyframe's entry whose content starts with the
same KEY_BYTES (the id's tag and most of the id) and is *aligned* with it when it has its
layout: then only its numbers are kept (store/statscolumns.py: residuals column by column).
An entry one of whose varints changed length (a counter past 2^28) is split: its own tag
and length kept as bytes, each of its fields aligned with the keyframe entry's field at the
same place, or, a message that does not align, split in its turn (a pod's linux field, then
the container in it whose counter grew), or kept as bytes. Any other entry is kept as its
bytes. The varints are read and
written in bulk by the protobuf runtime (store/varints.py), so a 108 KB reply costs a
Python loop over its 200 entries, not over its 3,000 numbers.

`encode` gives the delta's content (bodies.py compresses it with the keyframe as zstd's
dictionary and checks that it rebuilds the body); `decode` rebuilds the body. The content:
    uvarint(len(H)) H uvarint(len(R)) R kept bytes
H, packed uint64: the number of entries; per entry, with s = zigzag(keyframe entry index -
(the previous one's index + 1)): 0 and the length of the entry kept as bytes, 1 + 2s for
an aligned entry, or 2 + 2s, the length of its tag and length, its number of fields and
per field 0 and its length (kept as bytes), 1 (aligned) or 2, the length of its tag and
length, and its own fields as an entry's (split); then one word per residual column
(statscolumns.merged: a column per field path, whatever the entries' shapes). R, packed
sint64: the residuals, column after column. The kept bytes, one piece after another in the
order H names them. A `legacy` content (bodies.STATS_MARKER, written until 2 Dec 2026) has
no field split in its turn, and a column per varint of each shape (statscolumns.columns).
"""

from __future__ import annotations

from cri_proxy.store import statscolumns
from cri_proxy.store.templates import (
    PRINTABLE,
    Field,
    Template,
    aligned,
    fields,
    template,
)
from cri_proxy.store.varints import pack, read_uvarint, unpack, uvarint

KEY_BYTES = 48
MAX_SPLIT = 6  # nested fields split at most this deep (a stats reply's are 4 deep at most)


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else (-n << 1) - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


class Keyframe:
    """A keyframe parsed for stats deltas: its entries' templates, found by their first bytes."""

    def __init__(self, base: bytes) -> None:
        self.base = base
        self.entries = fields(base, 0, len(base)) or []
        self._shapes: dict[tuple[object, ...], int] = {}
        self.templates = [template(base[first:after], self._shapes) for first, _, after, _ in self.entries]
        self.index: dict[bytes, int] = {}
        for j, (_, value, _, _) in enumerate(self.entries):
            self.index.setdefault(base[value:value + KEY_BYTES], j)
        self._parts: dict[tuple[bool, tuple[int, ...]], tuple[list[Field], list[Template]]] = {}

    def parts(self, path: tuple[int, ...], legacy: bool = False) -> tuple[list[Field], list[Template]]:
        """The fields of the keyframe's entry path[0] (of its field path[1], and so on) and
        their templates, made when first needed: an entry one of whose varints changed
        length is aligned field by field, and a field that does not align, by its fields.
        A template's shape is told apart by the field numbers down to it, so that the same
        field of every entry makes one table's rows; `legacy`: as STATS_MARKER's deltas
        were written (an entry's own fields only, told apart by their place)."""
        found = self._parts.get((legacy, path))
        if found is None:
            inner, numbers = self._walk(path) if not legacy or len(path) == 1 else ([], ())
            found = self._parts[(legacy, path)] = (inner, [
                template(self.base[a:b], self._shapes,
                         (i,) if legacy else (*numbers, read_uvarint(self.base, a)[0] >> 3))
                for i, (a, _, b, _) in enumerate(inner)])
        return found

    def _walk(self, path: tuple[int, ...]) -> tuple[list[Field], tuple[int, ...]]:
        """The keyframe's fields at `path` and the field numbers down to them."""
        _, value, after, wire = self.entries[path[0]]
        inner = fields(self.base, value, after) if wire == 2 else None
        numbers: tuple[int, ...] = ()
        for i in path[1:]:
            if inner is None or i >= len(inner) or inner[i][3] != 2:
                return [], numbers
            numbers += (read_uvarint(self.base, inner[i][0])[0] >> 3,)
            inner = fields(self.base, inner[i][1], inner[i][2])
        return inner or [], numbers

    def encode(self, body: bytes) -> bytes | None:
        """The delta's content, or None when the body is not a message or no entry aligns."""
        entries = fields(body, 0, len(body))
        if entries is None:
            return None
        plan = _Plan(len(entries))
        for first, value, after, wire in entries:
            entry = body[first:after]
            j = self.index.get(body[value:value + KEY_BYTES])
            if j is None:
                plan.keep(entry)
                continue
            stream = aligned(self.templates[j], body, first, after)
            if stream is not None:
                plan.align(j, self.templates[j], stream)
                continue
            inner = fields(body, value, after) if wire == 2 else None
            if not inner or not self.parts((j,))[1]:
                plan.keep(entry)
                continue
            plan.split(j, body[first:value])
            self._fields(plan, (j,), body, inner, 0)
        return plan.content()

    def _fields(self, plan: _Plan, path: tuple[int, ...], body: bytes, inner: list[Field], depth: int) -> None:
        """Each field of a split entry (or field) aligned with the keyframe's field at the
        same place, split in its turn when it is a message that does not align, or kept."""
        base, parts = self.parts(path)
        plan.head.append(len(inner))
        for i, (a, v, b, wire) in enumerate(inner):
            if i < len(parts):
                stream = aligned(parts[i], body, a, b)
                if stream is not None:
                    plan.head.append(1)
                    plan.aligned.append(parts[i])
                    plan.streams.append(stream)
                    continue
                nested = fields(body, v, b) if wire == 2 == base[i][3] and depth < MAX_SPLIT else None
                if nested and body[v:b].translate(None, PRINTABLE) and self.parts((*path, i))[1]:
                    plan.head += (2, v - a)
                    plan.kept.append(body[a:v])
                    self._fields(plan, (*path, i), body, nested, depth + 1)
                    continue
            plan.head += (0, b - a)
            plan.kept.append(body[a:b])

    def decode(self, content: bytes, legacy: bool = False) -> bytes:
        """The body from a delta's content (`legacy`: written as STATS_MARKER's were); ValueError
        or IndexError when it does not fit."""
        size, i = read_uvarint(content, 0)
        head = unpack(content[i:i + size])
        i += size
        size, i = read_uvarint(content, i)
        residuals = unpack(content[i:i + size], signed=True)
        cursor = _Cursor(head, content, i + size)
        order: list[Template | bytes] = []
        previous = -1
        for _ in range(cursor.word()):
            code = cursor.word()
            if code == 0:
                order.append(cursor.kept())
                continue
            previous += 1 + _unzigzag((code - 1) >> 1)
            if code & 1:
                order.append(self.templates[previous])
                continue
            order.append(cursor.kept())  # a split entry: its tag and length, then each field
            self._order(cursor, order, (previous,), MAX_SPLIT if legacy else 0, legacy)
        if cursor.at != len(content):
            raise ValueError("a stats delta's sections do not add up")
        aligned = [t for t in order if isinstance(t, Template)]
        numbers = statscolumns.values if legacy else statscolumns.unmerged
        return _rebuild(order, pack(numbers(aligned, head[cursor.k:], residuals)))

    def _order(self, cursor: _Cursor, order: list[Template | bytes], path: tuple[int, ...], depth: int,
               legacy: bool) -> None:
        """A split entry's (or field's) pieces: per field 1 (aligned), 0 and its length (kept),
        or 2, the length of its tag and length and then its own fields (split)."""
        parts = self.parts(path, legacy)[1]
        for n in range(cursor.word()):
            code = cursor.word()
            if code == 1:
                order.append(parts[n])
            elif code == 0:
                order.append(cursor.kept())
            elif code == 2 and depth < MAX_SPLIT:
                order.append(cursor.kept())
                self._order(cursor, order, (*path, n), depth + 1, legacy)
            else:
                raise ValueError("a stats delta's field code is not one it may hold")


class _Cursor:
    """Reads the head's words and the kept bytes they give the lengths of, in order."""

    def __init__(self, head: list[int], content: bytes, at: int) -> None:
        self.head, self.k, self.content, self.at = head, 0, content, at

    def word(self) -> int:
        word = self.head[self.k]
        self.k += 1
        return word

    def kept(self) -> bytes:
        size = self.word()
        piece = self.content[self.at:self.at + size]
        self.at += size
        return piece


class _Plan:
    """A delta's content as it is worked out: the head's words, the aligned templates and
    their varints' bytes, the bytes kept as they are."""

    def __init__(self, entries: int) -> None:
        self.head = [entries]
        self.aligned: list[Template] = []
        self.streams: list[bytes] = []
        self.kept: list[bytes] = []
        self.previous = -1

    def keep(self, entry: bytes) -> None:
        self.head += (0, len(entry))
        self.kept.append(entry)

    def align(self, j: int, t: Template, stream: bytes) -> None:
        self.head.append(1 + (_zigzag(j - self.previous - 1) << 1))
        self.previous = j
        self.aligned.append(t)
        self.streams.append(stream)

    def split(self, j: int, prefix: bytes) -> None:
        self.head += (2 + (_zigzag(j - self.previous - 1) << 1), len(prefix))
        self.previous = j
        self.kept.append(prefix)

    def content(self) -> bytes | None:
        if not self.aligned:
            return None
        try:
            rows = statscolumns.rows(self.aligned, unpack(b"".join(self.streams)))
            words, columns = statscolumns.merged(rows)
            residuals = pack(columns, signed=True)
        except ValueError:  # a varint over 64 bits, or a residual beyond int64
            return None
        top = pack(self.head + words)
        return b"".join((uvarint(len(top)), top, uvarint(len(residuals)), residuals, *self.kept))


def _rebuild(order: list[Template | bytes], stream: bytes) -> bytes:
    """The body: each aligned entry's form filled with its varints' bytes (one C call an
    entry), the other entries as they were kept."""
    pieces: list[bytes] = []
    at = 0
    for item in order:
        if isinstance(item, bytes):
            pieces.append(item)
            continue
        size = item.size
        pieces.append(item.form % item.cuts(stream[at:at + size]))
        at += size
    return b"".join(pieces)
