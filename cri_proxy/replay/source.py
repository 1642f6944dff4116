"""Reading recorded calls back out of a recording, in the order they started.

A replay and `serve` both need the raw request and response bytes of each call with its
status; the JSON views are decoded again where needed. Calls whose bytes were not stored
(over the payload cap, or dropped by redaction) keep `complete=False` so callers can skip
them with a reason instead of sending something other than what was recorded.

`serve` answers from every selected call at once (`load_calls`). A replay goes through the
calls once, in order, and a node's recording may hold millions of them: `CallStream` reads
them in batches on aiosqlite's thread, the next batch while the current one is replayed,
so a replay's memory stays that of a few batches and the event loop never waits on a read.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from cri_proxy.model.errors import ConfigError, StorageError
from cri_proxy.store.readonly import BUSY_TIMEOUT_S, Recording, authorize_read, read_only_uri
from cri_proxy.model.cri import MUTATING


@dataclass(slots=True)
class SourceCall:
    """One recorded call as replay and serve use it."""

    id: int
    session_id: int
    path: str
    method: str
    started_unix: float
    duration_ms: float | None
    status_code: int | None
    status_name: str | None
    status_message: str | None
    outcome: str
    redacted: bool
    client_api: str | None
    requests: list[bytes] = field(default_factory=list)
    responses: list[bytes] = field(default_factory=list)
    response_offsets_s: list[float] = field(default_factory=list)
    complete: bool = True  # every message's bytes were stored, uncompressed

    @property
    def is_cri(self) -> bool:
        return self.client_api is not None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which calls of a recording: one session (None: every session except earlier replays'),
    a time range (unix seconds, both ends included), and an extra SQL condition on `calls`
    columns."""

    session: int | None = None
    since: float | None = None
    until: float | None = None
    where: str | None = None


_COLUMNS = ("id, session_id, path, method, started_unix, duration_ms, status_code, status_name, "
            "status_message, outcome, redacted, client_api")


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """The recording, read-only; StorageError (one line) when it cannot be read."""
    if not os.path.exists(path):
        raise StorageError(f"no recording database at {os.fspath(path)}")
    return Recording(path)


def load_calls(conn: sqlite3.Connection, selection: Selection) -> list[SourceCall]:
    """The selected calls with their messages, by `started_unix` (then id)."""
    _check_session(conn, selection)
    sql, args = _select(selection)
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise _where_error(selection, exc) from None
    calls = [_call(r) for r in rows]
    by_id = {c.id: c for c in calls}
    for chunk in _chunks(list(by_id), 500):
        _attach(by_id, conn.execute(_MESSAGES.format(marks=",".join("?" * len(chunk))), chunk))
    return calls


@dataclass(frozen=True, slots=True)
class Summary:
    """What a replay says before it starts: how many calls, how many change the node, from
    which sessions, and when the first one started."""

    count: int
    mutating: int
    sessions: list[int]
    first_started_unix: float | None


class CallStream:
    """The selected calls of a recording, read batch by batch as they are consumed.

    Use `async with await CallStream.open(...)`; `summary()` first, then iterate once.
    """

    def __init__(self, conn: aiosqlite.Connection, selection: Selection, batch_calls: int,
                 batch_bytes: int) -> None:  # fmt: skip
        self._conn = conn
        self._selection = selection
        self._batch_calls = batch_calls
        self._batch_bytes = batch_bytes

    @classmethod
    async def open(cls, path: str | os.PathLike[str], selection: Selection, *, immutable: bool,
                   batch_calls: int = 256, batch_bytes: int = 16 << 20) -> CallStream:  # fmt: skip
        """Open `path` read-only. `immutable` only for a file nothing writes while it is read
        (a stopped recording that the replay does not write into). StorageError, in one line,
        for a file it cannot open or a session that is not there."""
        try:
            conn = await aiosqlite.connect(read_only_uri(os.fspath(path), immutable), uri=True,
                                           timeout=BUSY_TIMEOUT_S)  # fmt: skip
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {os.fspath(path)}: {exc}") from exc
        try:
            await conn.execute("PRAGMA query_only = ON")
            await conn.set_authorizer(authorize_read)
            stream = cls(conn, selection, batch_calls, batch_bytes)
            await _check_session_async(conn, selection)
        except BaseException:
            await conn.close()
            raise
        return stream

    async def __aenter__(self) -> CallStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._conn.close()

    async def summary(self) -> Summary:
        where, args = _where(self._selection)
        marks = ",".join("?" * len(MUTATING))
        try:
            async with self._conn.execute(
                    f"SELECT count(*), coalesce(sum(method IN ({marks})), 0), min(started_unix), "
                    f"group_concat(DISTINCT session_id) FROM calls{where}", [*sorted(MUTATING), *args]) as cur:
                count, mutating, first, sessions = await cur.fetchone()  # type: ignore[misc]
        except sqlite3.Error as exc:
            raise _where_error(self._selection, exc) from None
        return Summary(int(count), int(mutating), sorted(int(s) for s in (sessions or "").split(",") if s),
                       None if first is None else float(first))  # fmt: skip

    async def __aiter__(self) -> AsyncIterator[SourceCall]:
        batches: asyncio.Queue[list[SourceCall] | BaseException | None] = asyncio.Queue(maxsize=1)
        reader = asyncio.create_task(self._read(batches))
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
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass

    async def _read(self, out: asyncio.Queue[list[SourceCall] | BaseException | None]) -> None:
        """Fill `out` with batches of at most `batch_calls` calls and about `batch_bytes` bytes."""
        sql, args = _select(self._selection)
        try:
            try:
                cur = await self._conn.execute(sql, args)
            except sqlite3.Error as exc:
                raise _where_error(self._selection, exc) from None
            async with cur:
                batch: list[SourceCall] = []
                size = 0
                while rows := await cur.fetchmany(self._batch_calls):
                    for row in rows:
                        batch.append(_call(row))
                        size += int(row[-2] or 0) + int(row[-1] or 0)
                        if len(batch) >= self._batch_calls or size >= self._batch_bytes:
                            await out.put(await self._with_messages(batch))
                            batch, size = [], 0
                if batch:
                    await out.put(await self._with_messages(batch))
            await out.put(None)
        except sqlite3.Error as exc:
            await out.put(StorageError(f"reading the recorded calls failed: {exc}"))
        except Exception as exc:  # handed to the consumer, which raises it
            await out.put(exc)

    async def _with_messages(self, batch: list[SourceCall]) -> list[SourceCall]:
        by_id = {c.id: c for c in batch}
        for chunk in _chunks(list(by_id), 500):
            async with self._conn.execute(_MESSAGES.format(marks=",".join("?" * len(chunk))), chunk) as cur:
                _attach(by_id, await cur.fetchall())
        return batch


_MESSAGES = ("SELECT m.call_id, m.direction, m.offset_ms, p.data, m.compressed, p.truncated "
             "FROM messages m JOIN payloads p ON p.id = m.payload_id WHERE m.call_id IN ({marks}) "
             "ORDER BY m.call_id, m.direction, m.idx")


def _where(selection: Selection) -> tuple[str, list[object]]:
    clauses, args = _conditions(selection)
    return (" WHERE " + " AND ".join(f"({c})" for c in clauses) if clauses else ""), args


def _select(selection: Selection) -> tuple[str, list[object]]:
    where, args = _where(selection)
    return f"SELECT {_COLUMNS}, request_bytes, response_bytes FROM calls{where} ORDER BY started_unix, id", args


def _call(r: Any) -> SourceCall:
    return SourceCall(int(r[0]), int(r[1]), r[2], r[3], float(r[4]), r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])


def _attach(by_id: dict[int, SourceCall], rows: Iterable[Any]) -> None:
    for call_id, direction, offset_ms, data, compressed, truncated in rows:
        call = by_id[call_id]
        if data is None or compressed or truncated:
            call.complete = False
        body = bytes(data or b"")
        if direction == "request":
            call.requests.append(body)
        else:
            call.responses.append(body)
            call.response_offsets_s.append(float(offset_ms) / 1000.0)


def _where_error(selection: Selection, exc: sqlite3.Error) -> ConfigError:
    return ConfigError(f"--where {selection.where!r}: {exc}")


_SESSION_SQL = "SELECT 1 FROM sessions WHERE id = ?"
_NO_SESSION = "no session {} in the recording (see: cri-proxy stats)"


def _check_session(conn: sqlite3.Connection, selection: Selection) -> None:
    if selection.session is not None and not conn.execute(_SESSION_SQL, (selection.session,)).fetchone():
        raise StorageError(_NO_SESSION.format(selection.session))


async def _check_session_async(conn: aiosqlite.Connection, selection: Selection) -> None:
    if selection.session is None:
        return
    async with conn.execute(_SESSION_SQL, (selection.session,)) as cur:
        if await cur.fetchone() is None:
            raise StorageError(_NO_SESSION.format(selection.session))


def _conditions(selection: Selection) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if selection.session is not None:
        clauses.append("session_id = ?")
        args.append(selection.session)
    else:  # earlier replays recorded into the same file are not part of what was recorded
        clauses.append("session_id NOT IN (SELECT id FROM sessions WHERE json_valid(config) "
                       "AND json_extract(config, '$.replay_of') IS NOT NULL)")
    for bound, op in ((selection.since, ">="), (selection.until, "<=")):
        if bound is not None:
            clauses.append(f"started_unix {op} ?")
            args.append(bound)
    if selection.where:
        clauses.append(selection.where)
    return clauses, args


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
