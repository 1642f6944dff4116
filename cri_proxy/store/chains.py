"""Bodies stored as deltas, rebuilt through their chains for a reader.

A delta's base (`payloads.base_id`) is its method's keyframe, a body stored as it is, or
since 3 Dec 2026 another delta (a link of a chain, recorder/packing.py), whose own base is
read in its turn, at most MAX_DEPTH rows up to a body stored whole. A delta of a few KiB may
be in parts (store/parts.py). `Chains` walks those rows for one batch of a reader's messages
without knowing how the reader talks to SQLite: `need()` gives the next query to run (the
parts of marked rows, then the bases not read yet), `take()` its rows, until `need()` is
None; then `body()` rebuilds each one. Rebuilt bodies are kept in a `Memo` that lives as
long as the read (a reader goes in time order: the link a reply needs was rebuilt for the
call before it), bounded in bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from cri_proxy.model.errors import StorageError
from cri_proxy.store import bodies, parts

MAX_DEPTH = 64  # more than any writer chains (packing.MAX_CHAIN): a longer walk is a damaged file
MEMO_BYTES = 16 << 20
_CHUNK = 500  # ids per `IN (...)`

Row = tuple[Any, Any, Any]  # payloads (data, delta, base_id)
SELECT_BASES = "SELECT id, data, delta, base_id FROM payloads WHERE id IN ({marks})"


class Memo:
    """Bodies rebuilt or read as bases, by payload id, the most recent kept (MEMO_BYTES)."""

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self._bodies: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, payload_id: int) -> bytes | None:
        body = self._bodies.get(payload_id)
        if body is not None:
            self._bodies.move_to_end(payload_id)
        return body

    def put(self, payload_id: int, body: bytes) -> None:
        if payload_id in self._bodies or len(body) > self._max:
            return
        self._bodies[payload_id] = body
        self._bytes += len(body)
        while self._bytes > self._max:
            self._bytes -= len(self._bodies.popitem(last=False)[1])


class Chains:
    """The rows one batch of deltas needs, and the bodies rebuilt from them."""

    def __init__(self, memo: Memo, deltas: Iterable[tuple[int, Row]]) -> None:
        self._memo = memo
        self._rows: dict[int, Row] = {}
        self._parts: dict[int, bytes] = {}
        self._asked: set[int] = set()  # bases asked for (a row not there stays missing)
        self._asked_parts: set[int] = set()
        for payload_id, row in deltas:
            self._rows[payload_id] = row

    def need(self) -> tuple[str, list[int]] | None:
        """The next query whose rows `take` wants, or None when every row is there."""
        marked = [pid for pid, row in self._rows.items()
                  if row[1] is not None and len(row[1]) == 0 and pid not in self._asked_parts]
        if marked:
            self._asked_parts.update(marked[:_CHUNK])
            return parts.query(marked[:_CHUNK])
        bases = sorted({int(row[2]) for row in self._rows.values() if row[0] is None and row[2] is not None}
                       - self._rows.keys() - self._asked)
        bases = [b for b in bases if self._memo.get(b) is None]
        if bases:
            chunk = bases[:_CHUNK]
            self._asked.update(chunk)
            return SELECT_BASES.format(marks=",".join("?" * len(chunk))), chunk
        return None

    def take(self, rows: Iterable[Sequence[Any]]) -> None:
        """The rows of the last query `need` gave."""
        found = list(rows)
        if found and len(found[0]) == 2:  # parts: (id, data)
            self._parts.update(parts.joined(found))
            return
        for payload_id, data, delta, base_id in found:
            self._rows[int(payload_id)] = (data, delta, base_id)

    def body(self, payload_id: int) -> bytes | None:
        """The bytes of a delta row (or of a base); None when a row or part it needs is missing."""
        walk: list[int] = []
        at: int | None = payload_id
        body: bytes | None = None
        while at is not None:
            if (body := self._memo.get(at)) is not None:
                break
            row = self._rows.get(at)
            if row is None:
                return None
            if row[0] is not None:
                body = bytes(row[0])
                self._memo.put(at, body)
                break
            walk.append(at)
            if len(walk) > MAX_DEPTH:
                raise StorageError(f"a body stored as a delta is more than {MAX_DEPTH} deltas from a whole one")
            at = None if row[2] is None else int(row[2])
        if body is None:
            return None
        for link in reversed(walk):
            data, delta, _ = self._rows[link]
            delta = self._parts.get(link) if delta is not None and len(delta) == 0 else delta
            if delta is None:
                return None
            body = bodies.undelta(bytes(delta), body)
            self._memo.put(link, body)
        return body
