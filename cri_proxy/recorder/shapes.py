"""The writer's `call_shapes` rows (schema 12): what repeats from one call to the next, once.

A kubelet's calls of one method about one object repeat everything but their times, ids and
offsets: the writer keeps the ids of the shapes it stored (a dict from the shape's columns,
rows.SHAPE_COLUMNS, to its id) and a call of a known shape costs one thin `call_rows` row,
no message rows at all. A new shape is inserted with its one request and one response as
`shape_messages` rows whose offsets live in the calls' rows (`offset_us` NULL). A call with
more messages (a stream) gets a shape of its own, never cached, whose messages carry their
offsets. Ids inserted in a transaction that rolls back are forgotten with it (`clear`), and
so are all of them when rows may have been pruned, as for the other caches.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cri_proxy.recorder.clients import RowIds
from cri_proxy.store.rows import SHAPE_COLUMNS

__all__ = ["MAX_CACHED", "Shapes"]

MAX_CACHED = 65536  # a node's calls have a few thousand shapes; stats replies add one each
# The shape's inline metadata text (rows written through the `calls` view) is NULL here.
_INSERT = (f"INSERT INTO call_shapes ({', '.join(SHAPE_COLUMNS)}) VALUES ({', '.join('?' * len(SHAPE_COLUMNS))}) "
           "ON CONFLICT DO NOTHING")
_NOT_NULL = {"method", "route_id", "outcome", "request_bytes", "response_bytes", "request_count", "response_count",
             "redacted", "format_version"}
# Found through `shapes_identity` (its very expressions: NULL is x'' there).
_FIND = ("SELECT id FROM call_shapes WHERE "
         + " AND ".join(f"{c} = ?" if c in _NOT_NULL else f"ifnull({c}, x'') = ifnull(?, x'')" for c in SHAPE_COLUMNS)
         + " AND ifnull(request_metadata, x'') = x'' AND ifnull(response_metadata, x'') = x''"
         " AND ifnull(trailers, x'') = x''")
_INSERT_MESSAGES = ("INSERT OR REPLACE INTO shape_messages (shape_id, kind, idx, offset_us, payload_id, compressed) "
                    "VALUES (?, ?, ?, ?, ?, ?)")
_REQUEST, _RESPONSE = SHAPE_COLUMNS.index("request_payload"), SHAPE_COLUMNS.index("response_payload")

Key = tuple[object, ...]  # a shape's SHAPE_COLUMNS


class Shapes(RowIds[Key]):
    """Ids of the shapes stored in the open file: `shared` for a call of at most one request
    and one response, `own` for any other; `committed` or `clear` after the transaction."""

    def __init__(self) -> None:
        super().__init__(_INSERT, _FIND, MAX_CACHED)

    def shared(self, conn: sqlite3.Connection, key: Key) -> int:
        """The id of the shape `key`, inserted with its messages when new (a shape stored by
        an earlier run, or evicted from the cache, has its messages already)."""
        return self.id_of(conn, key)

    def _made(self, conn: sqlite3.Connection, key: Key, row_id: int) -> None:
        conn.executemany(_INSERT_MESSAGES, [(row_id, kind, 0, None, payload >> 1, payload & 1)
                                            for kind, payload in ((0, key[_REQUEST]), (1, key[_RESPONSE]))
                                            if isinstance(payload, int)])

    def own(self, conn: sqlite3.Connection, key: Key, messages: Sequence[tuple[int, int, int, int, int]]) -> int:
        """A new shape for one call (`key` names it in `call_id`), with its messages as
        (kind, idx, offset_us, payload_id, compressed)."""
        cursor = conn.execute(_INSERT, key)
        if cursor.rowcount != 1:  # a shape left by a deleted call of the same id: replaced
            conn.execute("DELETE FROM shape_messages WHERE shape_id IN (SELECT id FROM call_shapes WHERE call_id = ?)",
                         (key[-1],))
            conn.execute("DELETE FROM call_shapes WHERE call_id = ?", (key[-1],))
            cursor = conn.execute(_INSERT, key)
        shape_id = int(cursor.lastrowid or 0)
        conn.executemany(_INSERT_MESSAGES, [(shape_id, *m) for m in messages])
        return shape_id
