"""The recording's file as the writer lives with it: opened, re-opened, pruned, ended.

Before each batch: a file that was removed or replaced is re-created (writes to the old
inode would go nowhere anyone looks); after a fault the connection is re-opened, and a
corrupt file (SQLite says so, or PRAGMA quick_check at open finds damaged pages) is first
moved aside (faults.py). Retention runs between batches.

Disk space: the WAL is kept near writer.WAL_LIMIT_BYTES, and when the file system has less
free space than `SHORT_OF_SPACE_BYTES` the WAL is checkpointed and truncated before each
batch, and after a write that found the disk full. A full disk is then an ordinary database
fault: the calls that cannot be written are counted lost in one episode, which ends (and
is written down) with the first batch that fits once space returns.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time

from cri_proxy.model.errors import StorageError
from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.recorder.faults import Faults, is_busy
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.writer import BatchWriter, Totals
from cri_proxy.store.db import DatabaseCorrupt, is_corruption

log = logging.getLogger(__name__)

SHORT_OF_SPACE_BYTES = 16 << 20
_SQLITE_FULL = 13


def is_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) == _SQLITE_FULL


class Database:
    """The writer and its file's lifecycle. Only the writer's thread calls it."""

    def __init__(self, path: str, session: SessionInfo, options: RecorderOptions, faults: Faults) -> None:
        self.path = path
        self.options = options
        self.faults = faults
        self.writer = BatchWriter(path, session, max_payload_bytes=options.max_payload_bytes,
                                  busy_timeout_s=options.busy_timeout_s,
                                  max_database_bytes=options.max_database_bytes)
        self._last_prune = 0.0

    def start(self, totals: Totals, strict: bool) -> BaseException | None:
        """The first open: with `strict` a failure raises StorageError, otherwise it is
        returned (the recorder retries)."""
        opts = self.options
        failure: BaseException | None = None
        try:
            self.open(totals)
        except (StorageError, sqlite3.Error, OSError) as exc:
            if strict:
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot open the recording database {self.path}: {exc}") from exc
            failure = exc
        log.info(
            "recording to %s (queue %d calls / %d MiB, batches of %d every %.2f s, payloads capped at %d KiB)",
            self.path, opts.max_queue_calls, opts.max_queue_bytes >> 20, opts.batch_max_calls,
            opts.flush_interval_s, opts.max_payload_bytes >> 10,
        )  # fmt: skip
        return failure

    def open(self, totals: Totals) -> None:
        """Opens the file; DatabaseCorrupt marks it for moving aside at the next attempt."""
        try:
            self.writer.open(totals)
        except DatabaseCorrupt:
            self.faults.corrupt = True
            raise

    def write(self, batch: list[PreparedCall], totals: Totals, changed: bool, losses: list[LossEpisode]) -> int:
        writer = self.writer
        if writer.is_open and writer.file_replaced():
            log.warning("the recording database %s was removed or replaced: re-creating it", self.path)
            writer.close()
        if not writer.is_open:
            if self.faults.corrupt:
                self.faults.move_aside()
            self.open(totals)
        if self._short_of_space():
            self._checkpoint()
        return writer.write(batch, totals, changed, losses)

    def _short_of_space(self) -> bool:
        if not self.writer.wal_bytes():
            return False
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < SHORT_OF_SPACE_BYTES

    def _checkpoint(self) -> None:
        """Frees the WAL's space, if the database has room for its pages."""
        try:
            left = self.writer.checkpoint()
        except sqlite3.Error as exc:
            log.debug("checkpointing %s to make room failed: %s", self.path, exc)
            return
        if left:
            log.debug("checkpointing %s to make room left %d WAL pages (readers hold them)", self.path, left)

    def failed(self, exc: BaseException) -> None:
        """A write failed: re-open on the next attempt (the file may be back, or replaced),
        unless it was only locked."""
        if is_corruption(exc):
            self.faults.corrupt = True
        if is_full(exc) and self.writer.is_open:
            self._checkpoint()  # the WAL's pages may fit in the database's free pages
        if not is_busy(exc):
            self.writer.close()

    def maybe_prune(self) -> None:
        opts = self.options
        if (opts.retain_s is None and opts.retain_bytes is None) or \
                time.monotonic() < self._last_prune + opts.prune_interval_s:
            return
        self._last_prune = time.monotonic()
        cutoff = time.time() - opts.retain_s if opts.retain_s is not None else None
        try:
            pruned = self.writer.prune(cutoff, opts.retain_bytes)
        except sqlite3.Error as exc:
            log.warning("pruning the recording failed (%s); will try again", exc)
            return
        if pruned:
            log.info("pruned %d old calls from the recording", pruned)

    def end(self, totals: Totals, losses: list[LossEpisode]) -> None:
        """The session row's end, and the connection closed."""
        try:
            if self.writer.is_open:
                self.writer.end_session(totals, losses)
        except sqlite3.Error as exc:
            log.warning("could not write the end of the recording session to %s: %s", self.path, exc)
        finally:
            self.writer.close()
