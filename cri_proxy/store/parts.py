"""A stored delta cut into parts (schema 13, storage/migrations/0013_payload_parts.sql).

A row of a few KiB is kept whole in one 8 KiB page, so a page that holds less than its
room is left behind with the rest empty. The writer cuts a delta of PART_BYTES to
MAX_PARTS * PART_BYTES into rows of `payload_parts` (id = payload id * MAX_PARTS + part
number) and leaves the empty blob in `payloads.delta` as the mark; the reader asks for
the parts of the marked rows it has read (`query`) and joins them back (`joined`).
A recording older than schema 13 has no mark, so no query for parts is ever made on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

PART_BYTES = 1024
MAX_PARTS = 64  # the migration's `* 64`
MARK = b""  # payloads.delta of a row whose delta is in parts (a delta is never empty)


def cut(delta: bytes) -> bool:
    """Whether a delta of this size is stored in parts."""
    return PART_BYTES < len(delta) <= PART_BYTES * MAX_PARTS


def rows(payload_id: int, delta: bytes) -> list[tuple[int, bytes]]:
    """The `payload_parts` rows of a delta (cut(delta) is true)."""
    first = payload_id * MAX_PARTS
    return [(first + k, delta[at:at + PART_BYTES]) for k, at in enumerate(range(0, len(delta), PART_BYTES))]


INSERT = "INSERT INTO payload_parts (id, data) VALUES (?, ?)"


def query(payload_ids: Sequence[int]) -> tuple[str, list[int]]:
    """SQL and arguments that select the parts of these payloads (rowid ranges, in order)."""
    ranges = " OR ".join(["(id >= ? AND id < ?)"] * len(payload_ids))
    args = [bound for p in payload_ids for bound in (p * MAX_PARTS, p * MAX_PARTS + MAX_PARTS)]
    return f"SELECT id, data FROM payload_parts WHERE {ranges} ORDER BY id", args


def joined(found: Iterable[Sequence[object]]) -> dict[int, bytes]:
    """The deltas, by payload id, from the rows `query` selected."""
    pieces: dict[int, list[bytes]] = {}
    for part_id, data in found:
        pieces.setdefault(int(part_id) // MAX_PARTS, []).append(bytes(data))  # type: ignore[call-overload]
    return {payload_id: b"".join(chunks) for payload_id, chunks in pieces.items()}
