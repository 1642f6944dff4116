"""Reading recorded calls back out of a recording, in the order they started, as `StoredCall`s.

`serve` answers from every selected call at once (`load_calls`); `tail` reads call rows by id
without their messages (`read_calls`). A replay goes through the calls once, in order, and a
node's recording may hold millions of them: `CallStream` reads them in batches off the event
loop, the next batch while the current one is replayed, so a replay's memory stays that of a
few batches and the loop never waits on a read.

Every connection comes from the one read-only opener (store/readonly.py), so the async side
reads through it too, on a worker thread (what aiosqlite does, with the same connection, the
same compatibility layer and authorizer, and no second driver).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cri_proxy.model.cri import MUTATING
from cri_proxy.model.errors import StorageError
from cri_proxy.store.readonly import Recording
from cri_proxy.store.rows import SELECT_COLUMNS, SELECT_MESSAGES, StoredCall, attach_messages, message_bytes, stored_call
from cri_proxy.store.selection import Selection, check_session

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's variable limit
T = TypeVar("T")


def select_sql(selection: Selection) -> tuple[str, list[object]]:
    where, args = selection.sql_where()
    return f"SELECT {SELECT_COLUMNS} FROM calls AS c{where} ORDER BY c.started_unix, c.id", args


def with_messages(conn: sqlite3.Connection, calls: list[StoredCall]) -> list[StoredCall]:
    """The calls, each with its messages attached (in place)."""
    by_id = {c.id: c for c in calls}
    ids = list(by_id)
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i:i + _CHUNK]
        attach_messages(by_id, conn.execute(SELECT_MESSAGES.format(marks=",".join("?" * len(chunk))), chunk))
    return calls


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
    where, args = selection.sql_where()
    marks = ",".join("?" * len(MUTATING))
    try:
        count, mutating, first, sessions = conn.execute(
            f"SELECT count(*), coalesce(sum(c.method IN ({marks})), 0), min(c.started_unix), "
            f"group_concat(DISTINCT c.session_id) FROM calls AS c{where}", [*sorted(MUTATING), *args]).fetchone()
    except sqlite3.Error as exc:
        raise selection.error(exc) from None
    return Summary(int(count), int(mutating), sorted(int(s) for s in (sessions or "").split(",") if s),
                   None if first is None else float(first))  # fmt: skip


def _batches(conn: sqlite3.Connection, selection: Selection, batch_calls: int,
             batch_bytes: int) -> Iterator[list[StoredCall]]:  # fmt: skip
    """The selected calls in batches of at most `batch_calls` calls and about `batch_bytes`."""
    query, args = select_sql(selection)
    try:
        cursor = conn.execute(query, args)
    except sqlite3.Error as exc:
        raise selection.error(exc) from None
    batch: list[StoredCall] = []
    size = 0
    while rows := cursor.fetchmany(batch_calls):
        for row in rows:
            batch.append(stored_call(row))
            size += message_bytes(row)
            if len(batch) >= batch_calls or size >= batch_bytes:
                yield with_messages(conn, batch)
                batch, size = [], 0
    if batch:
        yield with_messages(conn, batch)


class CallStream:
    """The selected calls of a recording, read batch by batch as they are consumed.

    Use `async with await CallStream.open(...)`; `summary()` first, then iterate once.
    """

    def __init__(self, recording: Recording, selection: Selection, batch_calls: int, batch_bytes: int) -> None:
        self._recording = recording
        self._selection = selection
        self._batch_calls = batch_calls
        self._batch_bytes = batch_bytes
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], selection: Selection, *,
                   batch_calls: int = 256, batch_bytes: int = 16 << 20) -> CallStream:  # fmt: skip
        """Open `path` read-only. StorageError, in one line, for a file it cannot open or a
        session that is not there."""
        recording = await asyncio.to_thread(Recording, path)
        try:
            await asyncio.to_thread(check_session, recording.conn, selection.session)
        except BaseException:
            recording.close()
            raise
        return cls(recording, selection, batch_calls, batch_bytes)

    @property
    def recording(self) -> Recording:
        return self._recording

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stops the read ahead (a consumer may leave the loop half-way), then closes."""
        await self._stop_reader()
        self._recording.close()

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def summary(self) -> Summary:
        return await asyncio.to_thread(summarize, self._recording.conn, self._selection)

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
        """Fills `out` with batches, reading each on a worker thread."""
        batches = _batches(self._recording.conn, self._selection, self._batch_calls, self._batch_bytes)
        try:
            while (batch := await _finish_on_cancel(asyncio.to_thread(next, batches, None))) is not None:
                await out.put(batch)
            await out.put(None)
        except sqlite3.Error as exc:
            await out.put(StorageError(f"reading the recorded calls failed: {exc}"))
        except Exception as exc:  # handed to the consumer, which raises it
            await out.put(exc)


async def _finish_on_cancel(read: Awaitable[T]) -> T:
    """Awaits a read on a worker thread; when cancelled, lets the read finish first, so the
    connection is never closed under a thread still using it."""
    task = asyncio.ensure_future(read)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
