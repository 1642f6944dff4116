"""Message bodies seen before, recognised by their bytes: what was worked out about them once.

The kubelet repeats identical requests (List*, statuses, Version) and a runtime gives
identical answers to most of them, so nearly every body the recorder sees it has seen a
moment earlier, in the call before of the same method. Hashing it (sha256 runs at about
1.7 GB/s here: 15 us for a 26 KB ListContainers reply, 0.6 ms for a 1 MB stats reply) or
parsing it to look for secrets again is the recorder's largest cost per call; comparing it
with the bodies kept for its method costs a `memcmp` (1 us for 26 KB) and stops at the first
byte that differs. So each kind of body (method path and direction) keeps its last few
distinct bodies, each with what a pipeline peer learnt from it (its sha256, its redaction),
and a body equal to one of them gets that instead of the work.

Bounded: `PER_KIND` bodies per kind, `MAX_KINDS` kinds and `MAX_BYTES` in all (the least
recently used kinds go first), and bodies over `MAX_BODY_BYTES` are not kept. A kept body is the very bytes object of the call
that brought it, not a copy: the memory is shared with calls still on their way, and a later
equal body is replaced by it, so that the call holds one copy, not two.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

PER_KIND = 4
MAX_KINDS = 256
MAX_BYTES = 8 << 20
MAX_BODY_BYTES = 2 << 20

T = TypeVar("T")
Kind = tuple[str, bool]  # (method path, is the request)


class BodyMemo(Generic[T]):
    """What a peer learnt about each recent distinct body of each kind."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_body_bytes: int = MAX_BODY_BYTES,
                 per_kind: int = PER_KIND, max_kinds: int = MAX_KINDS) -> None:
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self.per_kind = per_kind
        self.max_kinds = max_kinds
        self.bytes = 0  # of the bodies kept
        self._kinds: OrderedDict[Kind, list[tuple[bytes, T]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def find(self, kind: Kind, data: bytes) -> tuple[bytes, T] | None:
        """(the kept bytes, what was learnt) when `data` equals a kept body of its kind."""
        entries = self._kinds.get(kind)
        if entries is not None:
            size = len(data)
            for i, entry in enumerate(entries):
                kept = entry[0]
                if kept is data or (len(kept) == size and kept == data):
                    if i:
                        entries.insert(0, entries.pop(i))
                    self.hits += 1
                    return entry
        self.misses += 1
        return None

    def add(self, kind: Kind, data: bytes, value: T) -> None:
        """Remember what was learnt about `data` (as the newest of its kind)."""
        if len(data) > self.max_body_bytes:
            return
        kinds = self._kinds
        entries = kinds.get(kind)
        if entries is None:
            entries = kinds[kind] = []
        else:
            kinds.move_to_end(kind)
        entries.insert(0, (data, value))
        self.bytes += len(data)
        for dropped in entries[self.per_kind:]:
            self.bytes -= len(dropped[0])
        del entries[self.per_kind:]
        while len(kinds) > self.max_kinds or (self.bytes > self.max_bytes and len(kinds) > 1):
            self.bytes -= sum(len(entry[0]) for entry in kinds.popitem(last=False)[1])
        if self.bytes > self.max_bytes:  # one kind over the whole bound: keep its newest only
            self.bytes -= sum(len(entry[0]) for entry in entries[1:])
            del entries[1:]

    def clear(self) -> None:
        self._kinds.clear()
        self.bytes = 0
