"""The one way to open a recording for reading: never changing it, while the proxy may be writing it.

Every reader (query, tail, stats, replay, serve, snapshot's source check) opens through
`Recording` (or `open_readonly` for a bare connection). Older schema versions are made to
look like the newest one with TEMP objects (store/compat.py), which never touch the file.

SQLite's `mode=ro` never writes the database file, but a WAL-mode database read that way
still needs the `-wal` file and its `-shm` index next to it, and SQLite creates them when
they are missing (an empty `-wal`, a 32 KiB `-shm`) and leaves them behind, since a
read-only connection may not delete them. So:

- a `-wal` file exists (the proxy is running, or it crashed): open with `mode=ro` and share
  the writer's `-wal` and `-shm` (its recent batches live there). SQLite creates the `-shm`
  only if it is missing (a live recording copied without it);
- no `-wal` file (the proxy stopped cleanly, or the file was copied elsewhere): everything is
  in the main file, so open with `immutable=1`: no lock, no side file, nothing created (and a
  directory we may not write is fine).

`Recording.refresh()` (for following a live file) notices the `-wal` coming or going and the
file being removed or replaced, and reopens accordingly. The one gap: a proxy starting while
a long query reads an immutable connection could checkpoint into the main file under it
(only after about 1000 pages of WAL, i.e. 16 MiB of new rows). And, as with any WAL reader
(`sqlite3 -readonly` too): a proxy that stops while we are connected cannot checkpoint and
remove its `-wal` and `-shm`, so they stay (intact, harmless) until the next writer opens it.

Besides mode=ro, every connection has `query_only` on (after compat has defined its TEMP
objects, kept in memory), and an authorizer refuses ATTACH (and so VACUUM INTO), which would
create other files, and turning query_only off.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse

from cri_proxy.model.errors import StorageError
from cri_proxy.store import DB_ENV, compat, db, sql

BUSY_TIMEOUT_S = 5.0
_SQLITE_ATTACH = 24
_SQLITE_PRAGMA = 19


def authorize_read(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
    """Refuses ATTACH (and so VACUUM INTO), which would create other files, and turning
    query_only off. mode=ro already refuses every write to the recording itself."""
    if action == _SQLITE_ATTACH or (action == _SQLITE_PRAGMA and arg1 == "query_only" and arg2 is not None):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def read_only_uri(path: str, immutable: bool) -> str:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class Recording:
    """A read-only connection to one recording file. `conn` is the current connection."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        denied = f"cannot read {self.path}: permission denied (the proxy makes it mode 0600: run as its owner)"
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StorageError(f"no recording database at {self.path} (give --db or set {DB_ENV})") from None
        except PermissionError:
            raise StorageError(denied) from None
        except OSError as exc:
            raise StorageError(f"cannot open {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"{self.path} is not a file")
        if not os.access(self.path, os.R_OK):
            raise StorageError(denied)
        self._identity = _identity(self.path)
        self._immutable = False
        self._stamp: tuple[int, int] | None = None
        self.schema_version = 0
        self.conn = self._open()

    @property
    def immutable(self) -> bool:
        """True when reading a stopped recording (no -wal) without locks or side files."""
        return self._immutable

    def _open(self) -> sqlite3.Connection:
        self._immutable = not os.path.exists(self.path + "-wal")
        self._stamp = self._file_stamp()
        try:
            conn = sqlite3.connect(read_only_uri(self.path, self._immutable), uri=True,
                                   timeout=BUSY_TIMEOUT_S, check_same_thread=False)  # fmt: skip
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        try:
            version = db.schema_version(conn)
            newest = len(sql.migrations())
            if version > newest:
                raise StorageError(
                    f"{self.path} was written by a newer cri-proxy (schema version {version}; this "
                    f"version knows up to {newest}): use a newer cri-proxy"
                )
            if version == 0:
                raise StorageError(f"{self.path} is not a cri-proxy recording (no schema_migrations table)")
            conn.execute("PRAGMA temp_store = MEMORY")  # compat's TEMP objects: no temporary file
            compat.adapt(conn, version)
            conn.execute("PRAGMA query_only = ON")
            conn.set_authorizer(authorize_read)
            self.schema_version = version
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StorageError(f"{self.path} is not a usable SQLite database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        """Before reading a live file again: raises StorageError when it was removed or
        replaced; reopens when the proxy started or stopped since (the -wal came or went),
        or when a stopped file changed under an immutable connection."""
        identity = _identity(self.path)
        if identity is None:
            raise StorageError(f"{self.path} was removed")
        if identity != self._identity:
            raise StorageError(f"{self.path} was replaced by another file")
        wal = os.path.exists(self.path + "-wal")
        if wal == self._immutable or (self._immutable and self._file_stamp() != self._stamp):
            self.conn.close()
            self.conn = self._open()

    def close(self) -> None:
        self.conn.close()


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A bare read-only connection (Recording's discipline, without following the file)."""
    return Recording(path).conn
