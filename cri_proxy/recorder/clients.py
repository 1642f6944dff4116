"""The writer's `clients` rows (0006_clients): who made a call, stored once per client.

A client is everything the relay learnt about a connection's peer (pid, uid, gid, process
name, executable); every call of it points at its row by `calls.client_id`. The ids are
cached per open database; an id inserted in a transaction that rolls back is forgotten with
it, so the cache never names a row that is not there.
"""

from __future__ import annotations

import sqlite3
from typing import Generic, TypeVar

from cri_proxy.model.call import RecordedCall

Identity = tuple["int | None", "int | None", "int | None", "str | None", "str | None"]

_INSERT = ("INSERT INTO clients (pid, uid, gid, name, exe) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT DO NOTHING")  # fmt: skip
_FIND = ("SELECT id FROM clients WHERE ifnull(pid, -1) = ifnull(?, -1) AND ifnull(uid, -1) = ifnull(?, -1) "
         "AND ifnull(gid, -1) = ifnull(?, -1) AND ifnull(name, '') = ifnull(?, '') "
         "AND ifnull(exe, '') = ifnull(?, '')")  # fmt: skip
MAX_CACHED = 4096  # a node with a crictl a second meets a new pid a second: the oldest go


def identity(call: RecordedCall) -> Identity | None:
    """The call's client, or None when nothing is known of it (a call the bridge served)."""
    key = (call.peer_pid, call.peer_uid, call.peer_gid, call.peer_name, call.peer_exe)
    return None if all(v is None for v in key) else key


K = TypeVar("K", bound=tuple)  # a row's identity: its columns


class RowIds(Generic[K]):
    """Ids of rows stored once per distinct identity (clients, routes), cached per open
    database: `id_of` inside the writer's transaction; `committed` or `rolled_back` after it."""

    def __init__(self, insert_sql: str, find_sql: str, max_cached: int = MAX_CACHED) -> None:
        self._insert, self._find, self._max = insert_sql, find_sql, max_cached
        self._ids: dict[K, int] = {}
        self._pending: dict[K, int] = {}

    def id_of(self, conn: sqlite3.Connection, key: K) -> int:
        found = self._ids.get(key) or self._pending.get(key)
        if found is not None:
            return found
        cursor = conn.execute(self._insert, key)
        if cursor.rowcount == 1 and cursor.lastrowid is not None:
            found = int(cursor.lastrowid)
            self._made(conn, key, found)
        else:  # stored by an earlier run (or evicted from the cache)
            found = int(conn.execute(self._find, key).fetchone()[0])
        self._pending[key] = found
        return found

    def _made(self, conn: sqlite3.Connection, key: K, row_id: int) -> None:
        """A row just inserted: what a subclass stores with it."""

    def committed(self) -> None:
        self._ids.update(self._pending)
        self._pending.clear()
        while len(self._ids) > self._max:
            del self._ids[next(iter(self._ids))]

    def rolled_back(self) -> None:
        self._pending.clear()

    def clear(self) -> None:
        """Another file (or the same one re-opened): no id is known there yet."""
        self._ids.clear()
        self._pending.clear()


class ClientIds(RowIds[Identity]):
    """The `clients` rows: `id_for` a call's client."""

    def __init__(self) -> None:
        super().__init__(_INSERT, _FIND)

    def id_for(self, conn: sqlite3.Connection, call: RecordedCall) -> int | None:
        key = identity(call)
        return None if key is None else self.id_of(conn, key)
