"""The one writer: turns batches of prepared calls into rows, one transaction per batch.

It runs on the recorder's own thread (see recorder.py) with the standard sqlite3 module, and
is the only code that touches the recording's file. The pipeline's peers (pipeline.py) have
already redacted each call, given its messages their JSON and read its ids; here each
message's payload row is reused when the same bytes were stored before, else inserted
(payload_rows.py). Metadata sets are stored once (packing.py), and so is what the call has in
common with others, its shape (shapes.py): a call of a shape already stored is one thin row
(the rows are made by writer_rows.py, the rollups counted as they are: rollups.py).
Faults raise out of `write` as they are; the recorder decides.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import cast

from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.recorder import packing, retention, rollups, sessions
from cri_proxy.recorder.shapes import Shapes
from cri_proxy.recorder.clients import ClientIds
from cri_proxy.recorder.payload_rows import PayloadRows
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.sessions import Totals
from cri_proxy.recorder.writer_rows import CallRows
from cri_proxy.store import db

log = logging.getLogger(__name__)

# The WAL is checkpointed at about this size and truncated back to it afterwards (SQLite's
# default, 1000 pages, is 8-16 MiB with our 8 or 16 KiB pages, and a WAL that grew stays that big):
# on a small disk the WAL alone could fill it, and nothing could ever be checkpointed again.
WAL_LIMIT_BYTES = 4 << 20

__all__ = ["BatchWriter", "Totals"]

# The sqlite3 module "adapts" every parameter that is not exactly an int, float, str or
# bytearray: for None and bytes that is a registry miss, then two attribute lookups that each
# fail by formatting an AttributeError (about 3,000 instructions; a small call's row binds
# eight Nones: a sixth of the instructions of its inserts). Adapters registered for the two
# types are found at once and hand the very value back (C callables), bound as before.
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))  # {}.get(None) is None
sqlite3.register_adapter(bytes, cast("Callable[[bytes], bytes]", bytes))  # bytes(b) is b


class BatchWriter(CallRows):
    """Owns the connection. Not thread-safe: only the recorder's thread calls it. The rows of
    a batch's calls are made by its base (writer_rows.CallRows)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        session: SessionInfo,
        *,
        max_payload_bytes: int = 1 << 20,
        busy_timeout_s: float = 1.0,
        max_database_bytes: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.session = session
        self._busy_timeout = busy_timeout_s
        self._max_db_bytes = max_database_bytes
        self._conn: sqlite3.Connection | None = None
        self._inode: tuple[int, int] | None = None
        self._session_id: int | None = None
        self._payloads = PayloadRows(max_payload_bytes)
        self._keyframes = self._payloads.keyframes
        self._sets = packing.MetadataSets()
        self._routes = packing.Routes()
        self._clients = ClientIds()
        self._shapes = Shapes()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def session_id(self) -> int | None:
        return self._session_id

    def open(self, totals: Totals) -> None:
        """Opens (or re-opens) the file and makes sure it holds this run's session row."""
        self.close()
        conn = db.open_database(self.path, busy_timeout_s=self._busy_timeout, max_bytes=self._max_db_bytes)
        try:
            self._check(conn)
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA wal_autocheckpoint = {max(1, WAL_LIMIT_BYTES // page_size)}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
            st = os.stat(self.path)
            inode = (st.st_dev, st.st_ino)
            if not sessions.has_session(conn, self._session_id, self.session):
                unclean = sessions.unclean_previous(conn)
                totals.loss_episodes += unclean is not None
                self._session_id = sessions.insert_session(conn, self.session, totals)
                sessions.insert_losses(conn, self._session_id, [unclean] if unclean else [])
        except BaseException:
            conn.close()
            raise
        self._conn, self._inode = conn, inode
        self._forget()

    def _forget(self) -> None:
        """Drops what is known of the file's rows (a new file, pruned rows, a rollback)."""
        self._payloads.forget()
        self._sets.clear()
        self._routes.clear()
        self._keyframes.clear()
        self._clients.clear()
        self._shapes.clear()

    def _check(self, conn: sqlite3.Connection) -> None:
        """PRAGMA quick_check: a file with damaged pages is not written to (the recorder
        moves it aside and starts a new one). It reads every page: a second or so a GB."""
        try:
            result = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if not db.is_corruption(exc):
                raise
            result = str(exc)
        if result != "ok":
            raise db.DatabaseCorrupt(f"{self.path} failed its integrity check: {result}")

    def checkpoint(self) -> int:
        """Copies the WAL into the database and truncates it; returns the WAL pages left
        (0: all of it went). Raises sqlite3.Error when even that does not fit."""
        conn = self._require()
        # Readers on an older snapshot (tail, query) would make it wait: give up at once instead.
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return 0 if not busy else int(log_pages) - int(done)

    def wal_bytes(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:
            return 0

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
        items: list[PreparedCall],
        totals: Totals,
        session_changed: bool = False,
        losses: list[LossEpisode] | None = None,
    ) -> int:
        """Writes the calls in one transaction with the session's counters (counting these
        calls as recorded) and finished loss episodes. Returns how many calls were written.
        Raises sqlite3.Error on database faults."""
        conn = self._require()
        pending: dict[str, int] = {}
        small: dict[bytes, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            rollup = rollups.Rollup()
            self._write_calls(conn, items, (pending, small), rollups.last_call_id(conn) + 1, rollup)
            rollup.store(conn)  # the per-minute rollups commit with the calls
            sessions.update_session(conn, self._session_id, self.session, totals, len(items), session_changed)
            sessions.insert_losses(conn, self._session_id, losses or [])
            conn.execute("COMMIT")
        except BaseException:
            retention.rollback(conn)
            self._clients.rolled_back()
            self._forget()  # ids handed out in this transaction are gone
            raise
        self._clients.committed()
        self._payloads.committed((pending, small))
        self._sets.committed()
        self._routes.committed()
        self._shapes.committed()
        return len(items)

    def end_session(self, totals: Totals, losses: list[LossEpisode]) -> None:
        conn = self._require()
        conn.execute("BEGIN IMMEDIATE")
        try:
            sessions.insert_losses(conn, self._session_id, losses)
            sessions.update_session(conn, self._session_id, self.session, totals, 0, changed=True)
            sessions.end_session(conn, self._session_id, time.time(), totals)
            conn.execute("COMMIT")
        except BaseException:
            retention.rollback(conn)
            raise

    def prune(self, older_than_unix: float | None, max_bytes: int | None, chunk: int = 200) -> int:
        """Retention (retention.prune) on this connection; returns how many calls went."""
        conn = self._require()
        try:
            return retention.prune(conn, older_than_unix, max_bytes, chunk)
        finally:
            self._payloads.forget()  # cached payload ids may be gone
            self._shapes.clear()  # and shapes
            # Keyframes too, but a new one costs a whole body: keep those still stored.
            # (Retention leaves metadata sets alone.)
            try:
                self._keyframes.keep(retention.existing_payloads(conn, self._keyframes.ids()))
            except sqlite3.Error:
                self._keyframes.clear()

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("the recording database is not open")
        return self._conn
