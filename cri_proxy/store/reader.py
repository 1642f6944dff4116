"""Reading recorded calls back out of a recording, in the order they started, as `StoredCall`s.

`serve` answers from every selected call at once (`load_calls`); `tail` reads call rows by id
without their messages (`read_calls`). A replay goes through the calls once, in order, and a
node's recording may hold millions of them: `CallStream` reads them in batches with aiosqlite
(the connection lives on aiosqlite's own thread), the next batch while the current one is
replayed, so a replay's memory stays that of a few batches and the loop never waits on a read.

The connection aiosqlite runs is the one read-only opener's (store/readonly.py: `Recording` is
its connector), so the async side has the same compatibility layer, authorizer and error
lines as every other reader, and the SQL and row decoding here are shared by both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from cri_proxy.model.cri import MUTATING
from cri_proxy.model.errors import StorageError
from cri_proxy.store.chains import Memo
from cri_proxy.store.readonly import Recording
from cri_proxy.store.rows import (
    SELECT_COLUMNS,
    SELECT_MESSAGES,
    StoredCall,
    attach_messages,
    chains,
    message_bytes,
    stored_call,
)
from cri_proxy.store.selection import NO_SESSION, SESSION_EXISTS, Selection, check_session

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's variable limit


def select_sql(selection: Selection) -> tuple[str, list[object]]:
    where, args = selection.sql_where()
    return f"SELECT {SELECT_COLUMNS} FROM calls AS c{where} ORDER BY c.started_unix, c.id", args


def with_messages(conn: sqlite3.Connection, calls: list[StoredCall], memo: Memo | None = None) -> list[StoredCall]:
    """The calls, each with its messages attached (in place); `memo` keeps the bodies rebuilt
    from deltas for the next calls of the same read."""
    by_id = {c.id: c for c in calls}
    memo = memo or Memo()
    for query, chunk in _message_queries(list(by_id)):
        rows = conn.execute(query, chunk).fetchall()
        deltas = chains(rows, memo)
        while (step := deltas.need()) is not None:
            deltas.take(conn.execute(*step).fetchall())
        attach_messages(by_id, rows, deltas)
    return calls


def _message_queries(ids: list[int]) -> Iterator[tuple[str, list[int]]]:
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        yield SELECT_MESSAGES.format(marks=",".join("?" * len(chunk))), chunk


def load_calls(conn: sqlite3.Connection, selection: Selection) -> list[StoredCall]:
    """The selected calls with their messages, by `started_unix` (then id)."""
    check_session(conn, selection.session)
    query, args = select_sql(selection)
    try:
        rows = conn.execute(query, args).fetchall()
    except sqlite3.Error as exc:
        raise selection.error(exc) from None
    return with_messages(conn, [stored_call(r) for r in rows])


def read_calls(conn: sqlite3.Connection, where: str, params: Sequence[Any], *, order: str = "c.id",
               limit: int | None = None) -> Iterator[StoredCall]:  # fmt: skip
    """Calls matching `where` (SQL over `calls AS c`), without messages, a few hundred at a time."""
    query = f"SELECT {SELECT_COLUMNS} FROM calls AS c WHERE {where} ORDER BY {order}"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    cursor = conn.execute(query, list(params))
    while batch := cursor.fetchmany(_CHUNK):
        for row in batch:
            yield stored_call(row)


def max_call_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()[0])


@dataclass(frozen=True, slots=True)
class Summary:
    """What a replay says before it starts: how many calls, how many change the node, from
    which sessions, and when the first one started."""

    count: int
    mutating: int
    sessions: list[int]
    first_started_unix: float | None


def summarize(conn: sqlite3.Connection, selection: Selection) -> Summary:
    query, args = _summary_sql(selection)
    try:
        return _summary(conn.execute(query, args).fetchone())
    except sqlite3.Error as exc:
        raise selection.error(exc) from None


def _summary_sql(selection: Selection) -> tuple[str, list[object]]:
    where, args = selection.sql_where()
    marks = ",".join("?" * len(MUTATING))
    return (f"SELECT count(*), coalesce(sum(c.method IN ({marks})), 0), min(c.started_unix), "
            f"group_concat(DISTINCT c.session_id) FROM calls AS c{where}", [*sorted(MUTATING), *args])  # fmt: skip


def _summary(row: Sequence[Any]) -> Summary:
    count, mutating, first, sessions = row
    return Summary(int(count), int(mutating), sorted(int(s) for s in (sessions or "").split(",") if s),
                   None if first is None else float(first))  # fmt: skip


async def _connect(path: str | os.PathLike[str], iter_chunk_size: int) -> tuple[Recording, aiosqlite.Connection]:
    """aiosqlite running the read-only opener's connection. The file is opened first (its
    StorageError, in one line, for a file it cannot open), so aiosqlite's connect cannot fail
    and leave its thread to finish after the loop has gone."""
    recording = await asyncio.to_thread(Recording, path)  # check_same_thread off: aiosqlite's thread uses it
    db = aiosqlite.Connection(lambda: recording.conn, iter_chunk_size)
    await db
    return recording, db


async def _close_quietly(db: aiosqlite.Connection) -> None:
    with contextlib.suppress(Exception):
        await db.close()


class CallStream:
    """The selected calls of a recording, read batch by batch as they are consumed.

    Use `async with await CallStream.open(...)`; `summary()` first, then iterate once.
    """

    def __init__(self, path: str, recording: Recording, db: aiosqlite.Connection, selection: Selection,
                 batch_calls: int, batch_bytes: int) -> None:  # fmt: skip
        self._path = path
        self._recording = recording
        self._db = db
        self._selection = selection
        self._batch_calls = batch_calls
        self._batch_bytes = batch_bytes
        self._reader: asyncio.Task[None] | None = None
        self._memo = Memo()  # bodies rebuilt from deltas, for the next batches' deltas

    @classmethod
    async def open(cls, path: str | os.PathLike[str], selection: Selection, *,
                   batch_calls: int = 256, batch_bytes: int = 16 << 20) -> CallStream:  # fmt: skip
        """Open `path` read-only. StorageError, in one line, for a file it cannot open or a
        session that is not there."""
        recording, db = await _connect(path, batch_calls)
        stream = cls(os.fspath(path), recording, db, selection, batch_calls, batch_bytes)
        try:
            await stream._check_session()
        except BaseException:
            await stream.close()
            raise
        return stream

    async def _check_session(self) -> None:
        session = self._selection.session
        if session is not None and not await self._db.execute_fetchall(SESSION_EXISTS, (session,)):
            raise StorageError(NO_SESSION.format(session))

    @property
    def recording(self) -> Recording:
        return self._recording

    async def reopen(self) -> None:
        """Before the first batch: reads the file afresh (the proxy started writing it since
        it was opened, so it now has a -wal to share)."""
        await _close_quietly(self._db)
        self._recording, self._db = await _connect(self._path, self._batch_calls)

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stops the read ahead (a consumer may leave the loop half-way), then closes."""
        await self._stop_reader()
        await _close_quietly(self._db)
        self._recording.close()

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def summary(self) -> Summary:
        query, args = _summary_sql(self._selection)
        try:
            async with self._db.execute(query, args) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise self._selection.error(exc) from None
        assert row is not None  # an aggregate always has its row
        return _summary(row)

    async def __aiter__(self) -> AsyncIterator[StoredCall]:
        batches: asyncio.Queue[list[StoredCall] | BaseException | None] = asyncio.Queue(maxsize=1)
        self._reader = asyncio.create_task(self._read(batches))
        try:
            while True:
                batch = await batches.get()
                if batch is None:
                    return
                if isinstance(batch, BaseException):
                    raise batch
                for call in batch:
                    yield call
                batch.clear()  # let the calls go as soon as the replay is done with them
        finally:
            await self._stop_reader()

    async def _read(self, out: asyncio.Queue[list[StoredCall] | BaseException | None]) -> None:
        """Fills `out` with batches of at most `batch_calls` calls and about `batch_bytes`."""
        try:
            async for batch in self._batches():
                await out.put(batch)
            await out.put(None)
        except sqlite3.Error as exc:
            await out.put(StorageError(f"reading the recorded calls failed: {exc}"))
        except Exception as exc:  # handed to the consumer, which raises it
            await out.put(exc)

    async def _batches(self) -> AsyncIterator[list[StoredCall]]:
        query, args = select_sql(self._selection)
        try:
            cursor = await self._db.execute(query, args)
        except sqlite3.Error as exc:
            raise self._selection.error(exc) from None
        async with cursor:
            batch: list[StoredCall] = []
            size = 0
            while rows := await cursor.fetchmany(self._batch_calls):
                for row in rows:
                    batch.append(stored_call(row))
                    size += message_bytes(row)
                    if len(batch) >= self._batch_calls or size >= self._batch_bytes:
                        yield await self._with_messages(batch)
                        batch, size = [], 0
            if batch:
                yield await self._with_messages(batch)

    async def _with_messages(self, calls: list[StoredCall]) -> list[StoredCall]:
        by_id = {c.id: c for c in calls}
        for query, chunk in _message_queries(list(by_id)):
            rows = list(await self._db.execute_fetchall(query, chunk))
            deltas = chains(rows, self._memo)
            while (step := deltas.need()) is not None:
                deltas.take(await self._db.execute_fetchall(*step))
            attach_messages(by_id, rows, deltas)
        return calls
