"""The one writer: turns batches of recorded calls into rows, one transaction per batch.

It runs on the recorder's own thread (see recorder.py) with the standard sqlite3 module.
Per call: redact first (so secrets never reach a payload), then for each message hash the
bytes, reuse the payload row when the same bytes were stored before (the kubelet repeats
identical List* requests every second), else decode to JSON and insert it, capping large
bodies (size and sha256 kept, data NULL, truncated=1). Ids for the call's columns come from
its decoded messages. Faults raise out of `write` as they are; the recorder decides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from cri_proxy import __version__
from cri_proxy.model.call import FORMAT_VERSION, Direction, Message, RecordedCall
from cri_proxy.messages.decode import decode_message
from cri_proxy.recorder.ids import call_ids
from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.recorder.redact import redact_call
from cri_proxy.store import db
from cri_proxy.store.rows import INSERT_CALL, call_row

log = logging.getLogger(__name__)

DecodeFn = Callable[[str, str, bytes], "dict[str, Any] | None"]
RedactFn = Callable[[RecordedCall], RecordedCall]
_CACHE_ENTRIES = 4096
_KEEP_JSON_CHARS = 4096  # decoded JSON kept in the cache for the ids of later calls, if small


def no_decode(path: str, direction: str, data: bytes) -> dict[str, Any] | None:
    """The default decoder: stores no JSON."""
    return None


def no_redact(call: RecordedCall) -> RecordedCall:
    return call


@dataclass(slots=True)
class Totals:
    """The recorder's counters, written to the session row with each batch."""

    recorded: int = 0
    lost: int = 0
    loss_episodes: int = 0


_Cached = tuple[int, "dict[str, Any] | None"]  # payload id, its decoded JSON when small


class BatchWriter:
    """Owns the connection. Not thread-safe: only the recorder's thread calls it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        session: SessionInfo,
        *,
        decode: DecodeFn = decode_message,
        redact: RedactFn = redact_call,
        max_payload_bytes: int = 1 << 20,
        busy_timeout_s: float = 1.0,
        max_database_bytes: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.session = session
        self._decode = decode
        self._redact = redact
        self._max_payload = max_payload_bytes
        self._busy_timeout = busy_timeout_s
        self._max_db_bytes = max_database_bytes
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._session_id: int | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._decode_failed = False

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def session_id(self) -> int | None:
        return self._session_id

    def open(self, totals: Totals) -> None:
        """Opens (or re-opens) the file and makes sure it holds this run's session row."""
        self.close()
        conn = db.open_database(
            self.path, busy_timeout_s=self._busy_timeout, max_bytes=self._max_db_bytes
        )
        try:
            st = os.stat(self.path)
            inode = (st.st_dev, st.st_ino)
            if not self._has_session(conn):  # a new or replaced file: the run starts a row there
                self._session_id = self._insert_session(conn, totals)
        except BaseException:
            conn.close()
            raise
        self._conn, self._inode = conn, inode
        self._cache.clear()

    def resume(self, session_id: int) -> None:
        """Before open(): carry on this run's row, started by a recorder process that died."""
        self._session_id = session_id

    def file_replaced(self) -> bool:
        """True when the open file was deleted or replaced (writes would go nowhere useful)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def write(
        self,
        calls: list[RecordedCall],
        totals: Totals,
        session_changed: bool = False,
        losses: list[LossEpisode] | None = None,
    ) -> int:
        """Writes the calls in one transaction with the session's counters (counting these
        calls as recorded) and finished loss episodes. Returns how many calls were written; a
        call whose redaction failed is dropped rather than stored unredacted. Raises
        sqlite3.Error on database faults."""
        conn = self._require()
        pending: dict[str, _Cached] = {}
        written = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for call in calls:
                written += self._write_call(conn, call, pending)
            self._update_session(conn, totals, written, session_changed)
            self._insert_losses(conn, losses or [])
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        for sha, cached in pending.items():
            self._remember(sha, cached)
        return written

    def end_session(self, totals: Totals, losses: list[LossEpisode]) -> None:
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert_losses(conn, losses)
            self._update_session(conn, totals, 0, changed=True)
            conn.execute(
                "UPDATE sessions SET ended_at = ?, calls_recorded = ?, calls_lost = ?, "
                "loss_episodes = ? WHERE id = ?",
                (db.utc_text(time.time()), totals.recorded, totals.lost, totals.loss_episodes,
                 self._session_id),
            )  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def prune(self, older_than_unix: float | None, max_bytes: int | None, chunk: int = 200) -> int:
        """Deletes the oldest calls (their messages, and bodies no call uses any more): all
        calls before `older_than_unix`, then more until the data fits in `max_bytes`. Freed
        pages are reused, so the file stops growing. Returns how many calls went."""
        conn = self._require()
        deleted = 0
        # Bodies shared with newer calls and half-empty pages are not freed, so by size at most
        # half of the calls go in one pass: the newest are never pruned for the oldest's sake.
        budget = conn.execute("SELECT count(*) FROM calls").fetchone()[0] // 2
        while True:
            args: tuple[float, ...]
            if older_than_unix is not None:
                where, args = "started_unix < ?", (older_than_unix,)
            elif max_bytes is not None and deleted < budget and self._used_bytes(conn) > max_bytes:
                where, args = "1", ()
                chunk = min(chunk, budget - deleted)
            else:
                break
            ids = [row[0] for row in conn.execute(
                f"SELECT id FROM calls WHERE {where} ORDER BY id LIMIT ?", (*args, chunk))]
            if not ids:
                if older_than_unix is None:
                    break
                older_than_unix = None  # age done: now the size
                continue
            self._delete_calls(conn, ids)
            deleted += len(ids)
        return deleted

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])

    def _delete_calls(self, conn: sqlite3.Connection, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        conn.execute("BEGIN IMMEDIATE")
        try:
            payloads = [row[0] for row in conn.execute(
                f"SELECT DISTINCT payload_id FROM messages WHERE call_id IN ({marks})", ids)]
            conn.execute(f"DELETE FROM messages WHERE call_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM calls WHERE id IN ({marks})", ids)
            conn.executemany(
                "DELETE FROM payloads WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE payload_id = ?)",
                [(p, p) for p in payloads])
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        self._cache.clear()  # cached payload ids may be gone

    def _insert_losses(self, conn: sqlite3.Connection, losses: list[LossEpisode]) -> None:
        conn.executemany(
            "INSERT INTO losses (session_id, started_at, ended_at, reason, calls_lost) "
            "VALUES (?, ?, ?, ?, ?)",
            [(self._session_id, db.utc_text(e.started_unix),
              None if e.ended_unix is None else db.utc_text(e.ended_unix), e.reason, e.calls_lost)
             for e in losses],
        )  # fmt: skip

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the recording database is not open")
        return self._conn

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _has_session(self, conn: sqlite3.Connection) -> bool:
        if self._session_id is None:
            return False
        row = conn.execute(
            "SELECT 1 FROM sessions WHERE id = ? AND started_unix = ? AND pid = ?",
            (self._session_id, self.session.started_unix, self.session.pid),
        ).fetchone()
        return row is not None

    def _insert_session(self, conn: sqlite3.Connection, totals: Totals) -> int:
        s = self.session
        cursor = conn.execute(
            "INSERT INTO sessions (started_at, started_unix, cri_proxy_version, format_version, "
            "hostname, pid, config, listen, runtime_endpoint, image_endpoint, runtime_api, "
            "image_api, calls_recorded, calls_lost, loss_episodes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (db.utc_text(s.started_unix), s.started_unix, __version__, FORMAT_VERSION,
             socket.gethostname(), s.pid, json.dumps(s.config, default=str), s.listen,
             s.runtime_endpoint, s.image_endpoint, s.runtime_api, s.image_api,
             totals.recorded, totals.lost, totals.loss_episodes),
        )  # fmt: skip
        return int(cursor.lastrowid or 0)  # an INSERT into a rowid table always sets it

    def _update_session(
        self, conn: sqlite3.Connection, totals: Totals, written: int, changed: bool
    ) -> None:
        conn.execute(
            "UPDATE sessions SET calls_recorded = ?, calls_lost = ?, loss_episodes = ? WHERE id = ?",
            (totals.recorded + written, totals.lost, totals.loss_episodes, self._session_id),
        )
        if changed:
            s = asdict(self.session)
            conn.execute(
                "UPDATE sessions SET listen = ?, runtime_endpoint = ?, image_endpoint = ?, "
                "runtime_api = ?, image_api = ?, config = ? WHERE id = ?",
                (s["listen"], s["runtime_endpoint"], s["image_endpoint"], s["runtime_api"],
                 s["image_api"], json.dumps(s["config"], default=str), self._session_id),
            )  # fmt: skip

    def _write_call(
        self, conn: sqlite3.Connection, call: RecordedCall, pending: dict[str, _Cached]
    ) -> int:
        try:
            redacted_call = self._redact(call)
        except Exception:
            log.exception("call %d/%d %s: redaction failed; the call is not recorded",
                          call.conn_id, call.stream_id, call.path)  # fmt: skip
            return 0
        # A redaction function hands back the very call when it had nothing to blank.
        redacted = redacted_call is not call and _fingerprint(redacted_call) != _fingerprint(call)
        call = redacted_call
        first: dict[Direction, dict[str, Any] | None] = {}
        payload_ids = []
        for message in call.messages:
            payload_id, decoded = self._payload(conn, call.path, message, pending)
            payload_ids.append(payload_id)
            first.setdefault(message.direction, decoded)
        ids = call_ids(call.path, first.get(Direction.REQUEST), first.get(Direction.RESPONSE))
        cursor = conn.execute(INSERT_CALL, call_row(call, self._session_id or 0, ids, redacted))
        call_id = cursor.lastrowid
        conn.executemany(
            "INSERT OR REPLACE INTO messages (call_id, direction, idx, offset_ms, payload_id, "
            "compressed) VALUES (?, ?, ?, ?, ?, ?)",
            [(call_id, _DIRECTION[m.direction], m.index, round(m.offset_s * 1000, 3), pid,
              int(m.compressed)) for m, pid in zip(call.messages, payload_ids)],
        )  # fmt: skip
        return 1

    def _payload(
        self, conn: sqlite3.Connection, path: str, message: Message, pending: dict[str, _Cached]
    ) -> _Cached:
        data = message.data
        sha = hashlib.sha256(data).hexdigest()
        cached = pending.get(sha)
        if cached is None and (cached := self._cache.get(sha)) is not None:
            self._cache.move_to_end(sha)
        if cached is not None:
            return cached
        # Not in the cache: most likely new, so decode and insert first, and look the row up
        # only when it was there after all (evicted from the cache, or stored by an earlier run).
        truncated = len(data) > self._max_payload
        decoded = None
        if not truncated and not message.compressed:
            decoded = self._decoded(path, message.direction.value, data)
        text = None if decoded is None else json.dumps(decoded, separators=(",", ":"))
        cursor = conn.execute(
            "INSERT INTO payloads (sha256, size, data, json, truncated) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO NOTHING",
            (sha, len(data), None if truncated else data, text, int(truncated)),
        )
        if cursor.rowcount == 1:
            keep = decoded if text is not None and len(text) <= _KEEP_JSON_CHARS else None
            cached = (int(cursor.lastrowid or 0), keep)
        else:
            row = conn.execute("SELECT id, json FROM payloads WHERE sha256 = ?", (sha,)).fetchone()
            text = row[1]
            cached = (row[0], json.loads(text) if text and len(text) <= _KEEP_JSON_CHARS else None)
        pending[sha] = cached
        return cached

    def _decoded(self, path: str, direction: str, data: bytes) -> dict[str, Any] | None:
        try:
            return self._decode(path, direction, data)
        except Exception:
            if not self._decode_failed:  # once per writer: a broken decoder fails every call
                log.exception("%s %s: decoding failed; storing the bytes without JSON", path, direction)
                self._decode_failed = True
            return None

    def _remember(self, sha: str, cached: _Cached) -> None:
        self._cache[sha] = cached
        self._cache.move_to_end(sha)
        if len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)


_DIRECTION = {d: d.value for d in Direction}  # Enum.value is a property: slow in a loop


def _fingerprint(call: RecordedCall) -> tuple[object, ...]:
    """What redaction may change: message bodies, metadata, trailers, status message."""
    return (
        [m.data for m in call.messages],
        list(call.request_metadata),
        list(call.response_metadata),
        list(call.trailers),
        call.status_message,
    )
