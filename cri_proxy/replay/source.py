"""Reading recorded calls back out of a recording, in the order they started.

A replay and `serve` both need the raw request and response bytes of each call with its
status; the JSON views are decoded again where needed. Calls whose bytes were not stored
(over the payload cap, or dropped by redaction) keep `complete=False` so callers can skip
them with a reason instead of sending something other than what was recorded.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

from cri_proxy.errors import ConfigError, StorageError
from cri_proxy.query.connect import Recording


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
    clauses, args = _conditions(conn, selection)
    sql = f"SELECT {_COLUMNS} FROM calls"
    if clauses:
        sql += " WHERE " + " AND ".join(f"({c})" for c in clauses)
    sql += " ORDER BY started_unix, id"
    try:
        rows = conn.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(f"--where {selection.where!r}: {exc}") from None
    calls = [SourceCall(int(r[0]), int(r[1]), r[2], r[3], float(r[4]), r[5], r[6], r[7], r[8], r[9],
                        bool(r[10]), r[11]) for r in rows]  # fmt: skip
    by_id = {c.id: c for c in calls}
    for chunk in _chunks(list(by_id), 500):
        marks = ",".join("?" * len(chunk))
        for call_id, direction, offset_ms, data, compressed, truncated in conn.execute(
            "SELECT m.call_id, m.direction, m.offset_ms, p.data, m.compressed, p.truncated "
            f"FROM messages m JOIN payloads p ON p.id = m.payload_id WHERE m.call_id IN ({marks}) "
            "ORDER BY m.call_id, m.direction, m.idx", chunk):
            call = by_id[call_id]
            if data is None or compressed or truncated:
                call.complete = False
            body = bytes(data or b"")
            if direction == "request":
                call.requests.append(body)
            else:
                call.responses.append(body)
                call.response_offsets_s.append(float(offset_ms) / 1000.0)
    return calls


def _conditions(conn: sqlite3.Connection, selection: Selection) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if selection.session is not None:
        if not conn.execute("SELECT 1 FROM sessions WHERE id = ?", (selection.session,)).fetchone():
            raise StorageError(f"no session {selection.session} in the recording (see: cri-proxy stats)")
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
