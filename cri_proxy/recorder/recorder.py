"""The recorder: a bounded queue in front of the one writer thread.

`submit` runs on the call path: it appends to an in-memory queue bounded by count and bytes,
and when the queue is full it counts the call lost instead (logged once per episode; an
episode ends when the queue drains). It never blocks and never raises.

A dedicated thread owns the database (the standard sqlite3 module: aiosqlite would be a
thread too, plus a hop through the event loop for every batch, and the proxy's loop is
better left to the relay). Every `flush_interval_s`, or as soon as a batch is full, it takes
up to `batch_max_calls` calls and writes them in one BEGIN IMMEDIATE transaction. When the
database fails (locked, read-only, deleted, full, corrupt) the batch is kept and retried
every `retry_interval_s` (reopening the file, re-creating it if it was removed, moving a
corrupt one aside) and counted lost after `max_attempts`; meanwhile the queue fills and
`submit` counts what does not fit. Each fault is logged once, when it starts and when it ends.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cri_proxy.model.errors import StorageError
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import RecorderStats
from cri_proxy.messages.decode import decode_message
from cri_proxy.recorder.redact import redact_call
from cri_proxy.recorder.writer import BatchWriter, DecodeFn, RedactFn, Totals
from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.store.db import DatabaseCorrupt, is_corruption

log = logging.getLogger(__name__)

CALL_OVERHEAD_BYTES = 512  # what a queued call costs beyond its message bytes, roughly
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: the file is fine, someone holds the lock


Queued = tuple[RecordedCall, int]


class Recorder:
    """A CallSink that records to a SQLite file. start() before submitting, close() at the end."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        session: SessionInfo | None = None,
        options: RecorderOptions | None = None,
        *,
        decode: DecodeFn | None = None,
        redact: RedactFn | None = None,
        keep: Callable[[RecordedCall], bool] | None = None,
    ) -> None:
        """`keep` (e.g. recorder.keep's KeepPolicy.keep) decides on the call path which calls
        are queued at all; the ones it declines are counted as skipped, not lost."""
        self.options = opts = options or RecorderOptions()
        self._keep = keep
        self._skipped = 0
        self.path = os.fspath(path)
        self._writer = BatchWriter(
            self.path,
            session or SessionInfo(),
            decode=decode or decode_message,
            redact=redact or redact_call,
            max_payload_bytes=opts.max_payload_bytes,
            busy_timeout_s=opts.busy_timeout_s,
            max_database_bytes=opts.max_database_bytes,
        )
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[Queued] = deque()
        self._queued_bytes = 0
        self._held: list[Queued] = []  # a batch whose write failed, retried first
        self._in_flight = 0  # calls of the batch being written
        self._attempts = 0
        self._totals = Totals()
        self._overflow_lost: int | None = None  # calls lost in the current queue-full episode
        self._overflow_since = 0.0
        self._drained: int | None = None
        self._fault_since: float | None = None  # monotonic start of the current database fault
        self._fault_wall = 0.0
        self._fault_reason = ""
        self._losses: list[LossEpisode] = []  # finished episodes not yet written
        self._fault_lost = 0
        self._fault_counted = False
        self._corrupt = False
        self._retry_at = 0.0
        self._last_flush = 0.0
        self._last_prune = 0.0
        self._session_changed = False
        self._stopping = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None

    # -- the call path --------------------------------------------------------------------

    def submit(self, call: RecordedCall) -> None:
        try:
            if self._keep is not None and not self._kept(call):
                with self._lock:
                    self._skipped += 1
                return
            size = CALL_OVERHEAD_BYTES + sum(len(m.data) for m in call.messages)
            opts = self.options
            with self._lock:
                full = (
                    self._stopping
                    or len(self._queue) >= opts.max_queue_calls
                    or self._queued_bytes + size > opts.max_queue_bytes
                )
                if full:
                    first = self._lose_on_submit()
                else:
                    self._queue.append((call, size))
                    self._queued_bytes += size
                    if len(self._queue) >= opts.batch_max_calls:
                        self._wake.notify()
            if full and first:  # logged outside the lock, once per episode
                log.warning("recording queue full (%d calls, %d bytes): calls are counted lost until it drains",
                            opts.max_queue_calls, opts.max_queue_bytes)  # fmt: skip
        except Exception:  # the call path must never see the recorder fail
            try:
                self._totals.lost += 1
            except Exception:
                pass

    def _kept(self, call: RecordedCall) -> bool:
        try:
            return self._keep is None or self._keep(call)
        except Exception:  # a broken policy records too much rather than too little
            return True

    def _lose_on_submit(self) -> bool:
        """Under the lock: counts a call lost; True when this starts a queue-full episode."""
        self._totals.lost += 1
        if self._stopping:
            return False
        first = self._overflow_lost is None
        if self._overflow_lost is None:
            self._overflow_lost = 0
            self._overflow_since = time.time()
            self._totals.loss_episodes += 1
        self._overflow_lost += 1
        return first

    def lost_elsewhere(self, calls: int, episode: LossEpisode | None = None, starts: bool = False) -> None:
        """Calls lost before they reached `submit` (the recorder process fell behind): counted
        as lost; `starts` counts a new episode, `episode` is one that has ended."""
        with self._lock:
            self._totals.lost += calls
            if starts:
                self._totals.loss_episodes += 1
            if episode is not None:
                self._losses.append(episode)

    def carry_on(self, session_id: int | None, stats: RecorderStats) -> None:
        """Before start(): go on with the run's session row and counters where a recorder
        process that died left them (proxy.recorder_link restarts one)."""
        self._totals = Totals(stats.recorded, stats.lost, stats.loss_episodes)
        self._skipped = stats.skipped
        if session_id is not None:
            self._writer.resume(session_id)

    @property
    def fault(self) -> str | None:
        """Why the database does not work, while it does not."""
        with self._lock:
            return self._fault_reason if self._fault_since is not None else None

    # -- control --------------------------------------------------------------------------

    def start(self, strict: bool = True, thread: bool = True) -> None:
        """Opens the database and starts the writer thread. With `strict`, a database that
        cannot be opened raises StorageError; otherwise it is logged and retried.

        With `thread=False` no thread is started: the owner calls `pump()` from its own loop
        and `close()` writes what is left in the caller's thread. The recorder process does
        that: its tap and its writer then never wait for each other's interpreter lock."""
        try:
            self._writer.open(self._totals)
        except (StorageError, sqlite3.Error, OSError) as exc:
            if strict:
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot open the recording database {self.path}: {exc}") from exc
            self._corrupt = isinstance(exc, DatabaseCorrupt)
            self._begin_fault(exc)
        opts = self.options
        log.info(
            "recording to %s (queue %d calls / %d MiB, batches of %d every %.2f s, payloads capped at %d KiB)",
            self.path, opts.max_queue_calls, opts.max_queue_bytes >> 20, opts.batch_max_calls,
            opts.flush_interval_s, opts.max_payload_bytes >> 10,
        )  # fmt: skip
        if thread:
            self._thread = threading.Thread(target=self._run, name="cri-proxy-recorder", daemon=True)
            self._thread.start()

    def update_session(self, **changes: Any) -> None:
        """Sets session fields learnt later (runtime_api, image_api...); written with the next batch."""
        with self._lock:
            self._writer.session = replace(self._writer.session, **changes)
            self._session_changed = True

    def close(self, timeout_s: float | None = None) -> None:
        """Writes what is queued (within the timeout), ends the session row, stops the thread."""
        timeout = self.options.close_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._retry_at = 0.0
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout + self.options.busy_timeout_s + 1.0)
            if self._thread.is_alive():
                log.warning("the recording writer did not stop within %.1f s", timeout)
        else:
            while self.pump() is not None:
                pass
            self._finish()

    def pump(self) -> float | None:
        """Without a thread: write the batch that is due, if any. Returns how long the caller
        may wait before calling again (0 when more is ready), None once stopped."""
        with self._lock:
            batch, wait = self._poll(time.monotonic())
        if batch is None:
            if wait is not None and self._stopping:
                time.sleep(min(wait, 0.05))  # close(): a failing database is retried until the deadline
            return wait
        self._write_batch(batch)
        return 0.0

    @property
    def session_id(self) -> int | None:
        return self._writer.session_id

    @property
    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                recorded=self._totals.recorded,
                lost=self._totals.lost,
                skipped=self._skipped,
                loss_episodes=self._totals.loss_episodes,
                queued=len(self._queue) + len(self._held) + self._in_flight,
                queued_bytes=self._queued_bytes + sum(size for _, size in self._held),
                healthy=self._fault_since is None,
            )

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._write_batch(batch)
        except BaseException:
            log.exception("the recording writer stopped unexpectedly: calls are no longer recorded")
            raise
        finally:
            self._finish()

    def _write_batch(self, batch: list[Queued]) -> None:
        if self._drained is not None:
            log.warning("recording queue drained: %d calls were lost while it was full", self._drained)
            self._drained = None
        self._write(batch)

    def _next_batch(self) -> list[Queued] | None:
        with self._lock:
            while True:
                batch, wait = self._poll(time.monotonic())
                if batch is not None or wait is None:
                    return batch
                self._wake.wait(wait)

    def _poll(self, now: float) -> tuple[list[Queued] | None, float | None]:
        """Under the lock: (the batch to write now, None), or (None, seconds to wait before
        asking again), or (None, None) when the writer is done."""
        opts = self.options
        if self._stopping and (now >= self._deadline or not (self._queue or self._held)):
            return None, None
        if self._fault_since is not None and now < self._retry_at:
            until = min(self._retry_at, self._deadline) if self._stopping else self._retry_at
            return None, max(0.0, until - now)
        due = now >= self._last_flush + opts.flush_interval_s
        if (
            self._held
            or self._stopping
            or self._fault_since is not None
            or len(self._queue) >= opts.batch_max_calls
            or (due and (self._queue or self._session_changed or self._losses))
        ):
            return self._take(), None
        wait = self._last_flush + opts.flush_interval_s - now if self._queue else opts.flush_interval_s
        return None, max(0.001, wait)

    def _take(self) -> list[Queued]:
        """Under the lock: the held batch, or the next calls from the queue."""
        if self._held:
            batch, self._held = self._held, []
            self._in_flight = len(batch)
            return batch
        batch = []
        for _ in range(min(len(self._queue), self.options.batch_max_calls)):
            item = self._queue.popleft()
            self._queued_bytes -= item[1]
            batch.append(item)
        if not self._queue and self._overflow_lost is not None:
            self._drained = self._overflow_lost  # logged by the writer thread, outside the lock
            self._losses.append(
                LossEpisode(self._overflow_since, time.time(), "queue full", self._overflow_lost)
            )
            self._overflow_lost = None
        self._in_flight = len(batch)
        return batch

    def _write(self, batch: list[Queued]) -> None:
        writer = self._writer
        calls = [call for call, _ in batch]
        changed = False
        losses: list[LossEpisode] = []
        try:
            if writer.is_open and writer.file_replaced():
                log.warning("the recording database %s was removed or replaced: re-creating it", self.path)
                writer.close()
            if not writer.is_open:
                self._reopen()
            with self._lock:
                totals = replace(self._totals)
                changed = self._session_changed
                self._session_changed = False
                losses, self._losses = self._losses, []
            written = writer.write(calls, totals, changed, losses)
        except Exception as exc:
            with self._lock:
                self._session_changed = self._session_changed or changed
                self._losses[:0] = losses
            self._on_failure(batch, exc)
            return
        self._last_flush = time.monotonic()
        self._maybe_prune()
        with self._lock:
            self._in_flight = 0
            self._totals.recorded += written
            self._totals.lost += len(calls) - written
            self._attempts = 0
            fault_since, self._fault_since = self._fault_since, None
            lost, self._fault_lost, self._fault_counted = self._fault_lost, 0, False
            if lost:
                self._losses.append(LossEpisode(self._fault_wall, time.time(), self._fault_reason, lost))
        if fault_since is not None:
            log.warning(
                "recording to %s works again after %.1f s; %d calls were lost meanwhile",
                self.path, time.monotonic() - fault_since, lost,
            )  # fmt: skip

    def _maybe_prune(self) -> None:
        opts = self.options
        if (opts.retain_s is None and opts.retain_bytes is None) or \
                time.monotonic() < self._last_prune + opts.prune_interval_s:
            return
        self._last_prune = time.monotonic()
        cutoff = time.time() - opts.retain_s if opts.retain_s is not None else None
        try:
            pruned = self._writer.prune(cutoff, opts.retain_bytes)
        except sqlite3.Error as exc:
            log.warning("pruning the recording failed (%s); will try again", exc)
            return
        if pruned:
            log.info("pruned %d old calls from the recording", pruned)

    def _reopen(self) -> None:
        if self._corrupt:
            self._move_aside()
        try:
            self._writer.open(self._totals)
        except DatabaseCorrupt:
            self._corrupt = True
            raise
        self._corrupt = False

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, target + suffix)
            except FileNotFoundError:
                pass
        log.error("the recording database %s is corrupt: moved it to %s and started a new one", self.path, target)

    def _on_failure(self, batch: list[Queued], exc: Exception) -> None:
        code = getattr(exc, "sqlite_errorcode", None)
        busy = isinstance(code, int) and (code & 0xFF) in _BUSY_CODES
        if is_corruption(exc):
            self._corrupt = True
        if not busy:
            self._writer.close()  # reopen on the next attempt: the file may be back or replaced
        with self._lock:
            self._in_flight = 0
            self._attempts += 1
            if self._attempts >= self.options.max_attempts or self._stopping:
                self._totals.lost += len(batch)
                self._fault_lost += len(batch)
                if not self._fault_counted:
                    self._totals.loss_episodes += 1
                    self._fault_counted = True
                self._attempts = 0
            else:
                self._held = batch
            self._retry_at = time.monotonic() + self.options.retry_interval_s
            first = self._fault_since is None
        if first:
            self._begin_fault(exc)
        else:
            log.debug("recording to %s still failing: %s", self.path, exc)

    def _begin_fault(self, exc: BaseException) -> None:
        with self._lock:
            self._fault_since = time.monotonic()
            self._fault_wall = time.time()
            self._fault_reason = f"database: {exc}"
            self._retry_at = self._fault_since + self.options.retry_interval_s
        log.error(
            "recording to %s failed (%s): calls stay queued, retried every %.2g s and counted lost after %d attempts",
            self.path, exc, self.options.retry_interval_s, self.options.max_attempts,
        )  # fmt: skip

    def _finish(self) -> None:
        now = time.time()
        with self._lock:
            left = len(self._queue) + len(self._held)
            self._totals.lost += left
            self._queue.clear()
            self._held = []
            self._queued_bytes = 0
            losses, self._losses = self._losses, []
            if self._overflow_lost:
                losses.append(LossEpisode(self._overflow_since, now, "queue full", self._overflow_lost))
            if self._fault_since is not None and self._fault_lost:
                losses.append(LossEpisode(self._fault_wall, now, self._fault_reason, self._fault_lost))
            if left:
                self._totals.loss_episodes += 1
                losses.append(LossEpisode(now, now, "still queued at stop", left))
            totals = replace(self._totals)
        if left:
            log.warning("recording stopped with %d calls still queued: counted lost", left)
        try:
            if self._writer.is_open:
                self._writer.end_session(totals, losses)
        except sqlite3.Error as exc:
            log.warning("could not write the end of the recording session to %s: %s", self.path, exc)
        finally:
            self._writer.close()
