"""`cri-proxy snapshot SRC DEST`: a consistent copy of a recording, even while the proxy writes it.

`cp calls.db copy.db` while the proxy runs copies a file whose recent batches are still in
`calls.db-wal`: the copy misses them (often every call). SQLite's online backup API copies
the database as one reader sees it, WAL included, in one step, so the copy is a consistent
snapshot of every transaction committed when it began; the proxy keeps writing meanwhile.

The copy is built next to DEST (`DEST.part`, mode 0600 like the recording), then migrated
to this version's schema (an older source gives a current copy; the source itself is only
read), cut to the window asked for, vacuumed, and renamed into place: DEST never exists
half-made. Cutting deletes what lies outside the window: calls (with their messages, the
bodies no kept call uses, unless a kept delta needs one as its keyframe, and the metadata
sets no kept call points at), sessions that neither keep a call nor ran during the window,
and loss episodes outside it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cri_proxy.model.errors import StorageError
from cri_proxy.store import db
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import check_session


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """What the copy holds."""

    dest: str
    schema_version: int
    calls: int
    sessions: int
    calls_left_out: int  # outside the window
    size_bytes: int


def snapshot(src: str | os.PathLike[str], dest: str | os.PathLike[str], since: float | None = None,
             until: float | None = None, session: int | None = None) -> SnapshotResult:  # fmt: skip
    """Copies the recording `src` to the new file `dest`, keeping the calls of `session`
    started between `since` and `until` (unix seconds, both included; None: no bound).
    StorageError (one line) for an unreadable source, an existing `dest`, a missing session."""
    src, dest = os.fspath(src), os.fspath(dest)
    if os.path.lexists(dest):
        raise StorageError(f"{dest} already exists: give a new file for the snapshot")
    if since is not None and until is not None and since > until:
        raise StorageError("the snapshot window ends before it begins (--since is after --until)")
    part = dest + ".part"
    recording = Recording(src)
    try:
        check_session(recording.conn, session)
        _create_private(part)
        target = sqlite3.connect(part)
        try:
            recording.conn.backup(target)  # one step: one consistent read of the source
        finally:
            target.close()
    except BaseException:
        _remove(part)
        raise
    finally:
        recording.close()
    try:
        result = _finish(part, dest, since, until, session)
        os.replace(part, dest)
    except BaseException:
        _remove(part)
        raise
    return result


def _finish(part: str, dest: str, since: float | None, until: float | None, session: int | None) -> SnapshotResult:
    conn = db.open_database(part)  # migrates a copy of an older recording, views included
    try:
        before = _count(conn, "calls")
        if since is not None or until is not None or session is not None:
            _cut(conn, since, until, session)
            conn.execute("VACUUM")
        calls, sessions = _count(conn, "calls"), _count(conn, "sessions")
        version = db.schema_version(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()  # the last connection: SQLite checkpoints and removes the -wal
    for side in ("-wal", "-shm"):
        _remove(part + side)
    return SnapshotResult(dest, version, calls, sessions, before - calls, os.path.getsize(part))


def _cut(conn: sqlite3.Connection, since: float | None, until: float | None, session: int | None) -> None:
    keep: list[str] = ["1"]
    args: list[object] = []
    if session is not None:
        keep.append("session_id = ?")
        args.append(session)
    if since is not None:
        keep.append("started_unix >= ?")
        args.append(since)
    if until is not None:
        keep.append("started_unix <= ?")
        args.append(until)
    outside = f"NOT ({' AND '.join(keep)})"
    ran = ["1"]  # sessions that ran during the window (kept even without a call in it)
    ran_args: list[object] = []
    if session is not None:
        ran.append("id = ?")
        ran_args.append(session)
    if until is not None:
        ran.append("started_unix <= ?")
        ran_args.append(until)
    if since is not None:
        ran.append("(ended_at IS NULL OR ended_at >= ?)")
        ran_args.append(db.utc_text(since))
    conn.execute("BEGIN IMMEDIATE")
    try:
        # The tables behind `calls` and `messages` (the copy is migrated): the calls, then the
        # shapes (schema 12) no call kept, with their messages, then what no shape names.
        conn.execute(f"DELETE FROM call_rows WHERE {outside}", args)
        conn.execute("DELETE FROM shape_messages WHERE shape_id NOT IN (SELECT shape_id FROM call_rows)")
        conn.execute("DELETE FROM call_shapes WHERE id NOT IN (SELECT shape_id FROM call_rows)")
        # A body kept, and its base, and that base's (a delta's base may be a delta: a chain).
        conn.execute("WITH RECURSIVE needed(id) AS (SELECT payload_id FROM shape_messages UNION "
                     "SELECT p.base_id FROM payloads AS p JOIN needed AS n ON p.id = n.id WHERE p.base_id IS NOT NULL) "
                     "DELETE FROM payloads WHERE id NOT IN (SELECT id FROM needed)")
        conn.execute("DELETE FROM metadata_sets WHERE id NOT IN (SELECT request_metadata_id FROM call_shapes "
                     "WHERE request_metadata_id IS NOT NULL UNION SELECT response_metadata_id FROM call_shapes "
                     "WHERE response_metadata_id IS NOT NULL UNION SELECT trailers_id FROM call_shapes "
                     "WHERE trailers_id IS NOT NULL)")
        conn.execute(f"DELETE FROM sessions WHERE id NOT IN (SELECT session_id FROM calls) "
                     f"AND NOT ({' AND '.join(ran)})", ran_args)  # fmt: skip
        conn.execute("DELETE FROM losses WHERE session_id NOT IN (SELECT id FROM sessions)")
        if since is not None:
            conn.execute("DELETE FROM losses WHERE COALESCE(ended_at, started_at) < ?", (db.utc_text(since),))
        if until is not None:
            conn.execute("DELETE FROM losses WHERE started_at > ?", (db.utc_text(until),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _create_private(path: str) -> None:
    """An empty file of mode 0600 (a recording holds what the node ran), or StorageError."""
    _remove(path)  # a .part left by a snapshot that was killed
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from exc


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()
