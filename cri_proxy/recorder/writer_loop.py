"""The Recorder's writer side: when a batch is due, writing it, what a failing database does
to it, and the final flush at close.

The state lives here (`WriterLoop.__init__`): the lock the call path shares, the bounded
queue, the counters, the database and its fault state. recorder.recorder's `Recorder`
adds the call path (`submit`) and the control (start, close, update_session); the batch is
written by its thread (`_run`) or by the owner's loop (`pump`), never both.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.recorder.database import Database
from cri_proxy.recorder.faults import Faults
from cri_proxy.recorder.pipeline import Pipeline
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.queue import CallQueue
from cri_proxy.recorder.writer import Totals

log = logging.getLogger(__name__)


class WriterLoop:
    """The state a Recorder's call path and its writer share, and the writer's side of it."""

    def __init__(self, path: str, session: SessionInfo, options: RecorderOptions, pipeline: Pipeline) -> None:
        self.options = opts = options
        self.path = path
        self.pipeline = pipeline
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = CallQueue(opts)
        self._totals = Totals()
        self._skipped = 0
        self._faults = Faults(self.path, opts)
        self._db = Database(self.path, session, opts, self._faults)
        self._losses: list[LossEpisode] = []  # finished episodes not yet written
        self._last_flush = 0.0
        self._session_changed = False
        self._stopping = False
        self._deadline = 0.0
        self._thread: threading.Thread | None = None

    def pump(self) -> float | None:
        """Without a thread: write the batch that is due, if any. Returns how long the caller
        may wait before calling again (0 when more is ready), None once stopped."""
        with self._lock:
            batch, wait = self._poll(time.monotonic())
        if batch is None:
            if wait is not None and self._stopping:
                time.sleep(min(wait, 0.05))  # close(): a failing database is retried until the deadline
            return wait
        self._write(*batch)
        return 0.0

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._write(*batch)
        except BaseException:
            log.exception("the recording writer stopped unexpectedly: calls are no longer recorded")
            raise
        finally:
            self._finish()

    def _next_batch(self) -> tuple[list[PreparedCall], bool] | None:
        with self._lock:
            while True:
                batch, wait = self._poll(time.monotonic())
                if batch is not None or wait is None:
                    return batch
                self._wake.wait(wait)

    def _poll(self, now: float) -> tuple[tuple[list[PreparedCall], bool] | None, float | None]:
        """Under the lock: (the batch to write now, None), or (None, seconds to wait before
        asking again), or (None, None) when the writer is done."""
        opts, queue, faults = self.options, self._queue, self._faults
        if self._stopping and (now >= self._deadline or not (queue.calls or queue.held)):
            return None, None
        if not faults.healthy and now < faults.retry_at:
            until = min(faults.retry_at, self._deadline) if self._stopping else faults.retry_at
            return None, max(0.0, until - now)
        due = now >= self._last_flush + opts.flush_interval_s
        if (
            queue.held
            or self._stopping
            or not faults.healthy
            or queue.batch_ready()
            or (due and (queue.calls or self._session_changed or self._losses))
        ):
            return queue.take(self._losses), None
        wait = self._last_flush + opts.flush_interval_s - now if queue.calls else opts.flush_interval_s
        return None, max(0.001, wait)

    def _write(self, batch: list[PreparedCall], prepared: bool) -> None:
        if self._queue.drained is not None:
            log.warning("recording queue drained: %d calls were lost while it was full", self._queue.drained)
            self._queue.drained = None
        if not prepared:
            batch, dropped = self.pipeline.prepare_batch(batch)
            if dropped:  # by a peer (a failed redaction): lost, not stored
                with self._lock:
                    self._totals.lost += dropped
        with self._lock:
            totals = replace(self._totals)
            changed, self._session_changed = self._session_changed, False
            losses, self._losses = self._losses, []
        try:
            written = self._db.write(batch, totals, changed, losses)
        except Exception as exc:
            with self._lock:
                self._session_changed = self._session_changed or changed
                self._losses[:0] = losses
            self._on_failure(batch, exc)
            return
        self._last_flush = time.monotonic()
        self._db.maybe_prune()
        with self._lock:
            self._queue.in_flight = 0
            self._totals.recorded += written
            self._totals.lost += len(batch) - written
            fault_since, lost, episode = self._faults.recovered()
            if episode is not None:
                self._losses.append(episode)
        if fault_since is not None:
            log.warning(
                "recording to %s works again after %.1f s; %d calls were lost meanwhile",
                self.path, time.monotonic() - fault_since, lost,
            )  # fmt: skip

    def _on_failure(self, batch: list[PreparedCall], exc: Exception) -> None:
        self._db.failed(exc)
        with self._lock:
            self._queue.in_flight = 0
            faults = self._faults
            if faults.give_up(len(batch), self._stopping):
                self._totals.lost += len(batch)
                if faults.new_episode():
                    self._totals.loss_episodes += 1
            else:
                self._queue.held = batch
            first = faults.begin(exc)
        if first:
            self._faults.log_start(exc)
        else:
            log.debug("recording to %s still failing: %s", self.path, exc)

    def _finish(self) -> None:
        now = time.time()
        with self._lock:
            left = self._queue.clear()
            self._totals.lost += left
            losses, self._losses = self._losses, []
            if (episode := self._queue.open_episode(now)) is not None:
                losses.append(episode)
            if (episode := self._faults.open_episode(now)) is not None:
                losses.append(episode)
            if left:
                self._totals.loss_episodes += 1
                losses.append(LossEpisode(now, now, "still queued at stop", left))
            totals = replace(self._totals)
        if left:
            log.warning("recording stopped with %d calls still queued: counted lost", left)
        self._db.end(totals, losses)
