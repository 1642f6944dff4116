"""Opening recording databases for writing: file mode, page size, WAL, migrations, views.

Migrations follow sqlite-utils: each numbered file of storage/migrations runs in its own
`BEGIN IMMEDIATE` transaction together with its bookkeeping row in `schema_migrations`, so a
crash mid-migration leaves the database at the previous version. A database that records a
migration this version does not know was written by a newer cri-proxy and is refused.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator

from cri_proxy.model.clock import utc_text
from cri_proxy.model.errors import StorageError
from cri_proxy.store import sql

# A new file's page size. 16 KiB pages left up to 6 KB empty beside each 10 KB stats delta:
# 8 KiB stored 7% less of benchmarks/storage.py's node (4 KiB no less than 8).
PAGE_SIZE = 8192
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


class DatabaseCorrupt(StorageError):
    """The file is not a SQLite database, or its pages are damaged."""


def is_corruption(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def open_database(
    path: str | os.PathLike[str], *, busy_timeout_s: float = 1.0, max_bytes: int | None = None
) -> sqlite3.Connection:
    """Opens (creating it with mode 0600 if absent) a database for writing, migrated to the
    newest schema with fresh views. The connection is in autocommit mode: callers issue
    their own BEGIN IMMEDIATE / COMMIT. `max_bytes` caps the file's size (max_page_count)."""
    path = os.fspath(path)
    try:
        # Create the file ourselves so SQLite never makes it with the umask's wider mode; the
        # -wal and -shm files then take the same mode from it.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot create the recording database {path}: {exc.strerror}") from exc
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only before the first table
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        if max_bytes is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page_size)}")
        migrate(conn)
        create_views(conn)
    except BaseException as exc:
        conn.close()
        if is_corruption(exc):
            raise DatabaseCorrupt(f"{path} is not a usable SQLite database: {exc}") from exc
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied (0 for a database without any)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Applies the migrations this database lacks, each in its own transaction. Returns the
    versions applied. Refuses (StorageError) a database that has migrations we do not know."""
    known = sql.migrations()
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    unknown = sorted(applied - {m.version for m in known})
    if unknown:
        raise StorageError(_newer_message(_db_name(conn), max(unknown), len(known)))
    done = []
    for migration in known:
        if migration.version in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            if conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone():
                conn.execute("COMMIT")
                continue
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utc_text(time.time())),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(migration.version)
    return done


def create_views(conn: sqlite3.Connection) -> None:
    """Re-creates the project's own views (those storage/views.sql names), in one transaction.
    A user's own views are left alone: they are the user's, and may use ours."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name in sql.view_names():
            conn.execute(f'DROP VIEW IF EXISTS "{name}"')
        for statement in split_statements(sql.views()):
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def integrity_check(conn: sqlite3.Connection) -> list[str]:
    """PRAGMA integrity_check's lines: ["ok"] for a sound database."""
    return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]


def split_statements(script: str) -> Iterator[str]:
    """The script's statements one by one (executescript would commit our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


def _db_name(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "the database"


def _newer_message(path: str, version: int, newest: int) -> str:
    return (
        f"{path} was written by a newer cri-proxy (schema version {version}; this version knows "
        f"up to {newest}): use a newer cri-proxy or another database file"
    )
