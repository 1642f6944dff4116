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
same place or kept as bytes. Any other entry is kept as its bytes. The varints are read and
written in bulk by the protobuf runtime (store/varints.py), so a 108 KB reply costs a
Python loop over its 200 entries, not over its 3,000 numbers.

`encode` gives the delta's content (bodies.py compresses it with the keyframe as zstd's
dictionary and checks that it rebuilds the body); `decode` rebuilds the body. The content:
    uvarint(len(H)) H uvarint(len(R)) R kept bytes
H, packed uint64: the number of entries; per entry, with s = zigzag(keyframe entry index -
(the previous one's index + 1)): 0 and the length of the entry kept as bytes, 1 + 2s for
an aligned entry, or 2 + 2s, the length of its tag and length, its number of fields and
per field 0 and its length (kept as bytes) or 1 (aligned); then one word per residual
column (statscolumns.columns). R, packed sint64: the residuals, column after column. The
kept bytes, one piece after another in the order H names them.
"""

from __future__ import annotations

from cri_proxy.store import statscolumns
from cri_proxy.store.templates import Template, aligned, fields, template
from cri_proxy.store.varints import pack, read_uvarint, unpack, uvarint

KEY_BYTES = 48


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
        self._parts: dict[int, list[Template]] = {}

    def parts(self, j: int) -> list[Template]:
        """Templates of entry j's own fields (made when first needed): an entry one of whose
        varints changed length is aligned field by field."""
        found = self._parts.get(j)
        if found is None:
            _, value, after, wire = self.entries[j]
            inner = fields(self.base, value, after) if wire == 2 else None
            found = self._parts[j] = [template(self.base[a:b], self._shapes, (i,))
                                      for i, (a, _, b, _) in enumerate(inner or [])]
        return found

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
            parts = self.parts(j)
            if not inner or not parts:
                plan.keep(entry)
                continue
            plan.split(j, body[first:value], len(inner))
            for i, (a, _, b, _) in enumerate(inner):
                stream = aligned(parts[i], body, a, b) if i < len(parts) else None
                if stream is None:
                    plan.head += (0, b - a)
                    plan.kept.append(body[a:b])
                else:
                    plan.head.append(1)
                    plan.aligned.append(parts[i])
                    plan.streams.append(stream)
        return plan.content()

    def decode(self, content: bytes) -> bytes:
        """The body from a delta's content; ValueError or IndexError when it does not fit."""
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
            parts = self.parts(previous)
            for n in range(cursor.word()):
                order.append(parts[n] if cursor.word() else cursor.kept())
        if cursor.at != len(content):
            raise ValueError("a stats delta's sections do not add up")
        aligned = [t for t in order if isinstance(t, Template)]
        return _rebuild(order, pack(statscolumns.values(aligned, head[cursor.k:], residuals)))


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

    def split(self, j: int, prefix: bytes, count: int) -> None:
        self.head += (2 + (_zigzag(j - self.previous - 1) << 1), len(prefix), count)
        self.previous = j
        self.kept.append(prefix)

    def content(self) -> bytes | None:
        if not self.aligned:
            return None
        try:
            rows = statscolumns.rows(self.aligned, unpack(b"".join(self.streams)))
            words, columns = statscolumns.columns(rows)
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
