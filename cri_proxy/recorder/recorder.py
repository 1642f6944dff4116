"""The recorder: the pipeline's admission on the call path, a bounded queue, the one writer.

`submit` runs on the call path: the admission peers (keep) decide, then the call is appended
to the queue (queue.py), bounded by count and bytes; when it is full the call is counted
lost instead (logged once per episode; an episode ends when the queue drains). It never
blocks and never raises.

A dedicated thread owns the database (the standard sqlite3 module: aiosqlite would be a
thread too, plus a hop through the event loop for every batch, and the proxy's loop is
better left to the relay), or the owner pumps it from its own loop (the recorder process).
Every `flush_interval_s`, or as soon as a batch is full (`batch_max_calls`, or queue.BATCH_BYTES
of messages), it takes a batch of calls, runs the preparation peers (redact, decode, ids) over them and writes them in one
BEGIN IMMEDIATE transaction. When the database fails (locked, read-only, deleted, full,
corrupt) the batch is kept and retried (faults.py); meanwhile the queue fills and `submit`
counts what does not fit. That writer side, and the state both sides share, is
recorder.writer_loop's `WriterLoop`, which `Recorder` extends with the call path and control.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cri_proxy.messages.decode import DecodeFn
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo
from cri_proxy.recorder.pipeline import Pipeline, default_pipeline
from cri_proxy.recorder.redact import RedactFn
from cri_proxy.recorder.writer import Totals
from cri_proxy.recorder.writer_loop import WriterLoop

log = logging.getLogger(__name__)


class Recorder(WriterLoop):
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
        pipeline: Pipeline | None = None,
    ) -> None:
        """`pipeline` (recorder.setup builds it from the options) or the default one with
        `decode`, `redact` and `keep` (e.g. recorder.keep's KeepPolicy.keep) in it; the
        calls the keep peer declines are counted as skipped, not lost."""
        opts = options or RecorderOptions()
        pipeline = pipeline or default_pipeline(opts, decode=decode, redact=redact, keep=keep)
        super().__init__(os.fspath(path), session or SessionInfo(), opts, pipeline)

    # -- the call path --------------------------------------------------------------------

    def submit(self, call: RecordedCall) -> None:
        try:
            item = self.pipeline.admit(call)
            if item is None:
                with self._lock:
                    self._skipped += 1
                return
            with self._lock:
                full = self._stopping or self._queue.full_for(item.size)
                if full:
                    first = self._lose_on_submit()
                elif self._queue.put(item) and self._thread is not None:  # else the owner pumps
                    self._wake.notify()
            if full and first:  # logged outside the lock, once per episode
                log.warning("recording queue full (%d calls, %d bytes): calls are counted lost until it drains",
                            self.options.max_queue_calls, self.options.max_queue_bytes)  # fmt: skip
        except Exception:  # the call path must never see the recorder fail
            try:
                self._totals.lost += 1
            except Exception:
                pass

    def _lose_on_submit(self) -> bool:
        """Under the lock: counts a call lost; True when this starts a queue-full episode."""
        self._totals.lost += 1
        if self._stopping:
            return False
        first = self._queue.overflow()
        if first:
            self._totals.loss_episodes += 1
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
            self._db.writer.resume(session_id)

    @property
    def fault(self) -> str | None:
        """Why the database does not work, while it does not."""
        with self._lock:
            return None if self._faults.healthy else self._faults.reason

    # -- control --------------------------------------------------------------------------

    def start(self, strict: bool = True, thread: bool = True) -> None:
        """Opens the database and starts the writer thread. With `strict`, a database that
        cannot be opened raises StorageError; otherwise it is logged and retried.

        With `thread=False` no thread is started: the owner calls `pump()` from its own loop
        and `close()` writes what is left in the caller's thread. The recorder process does
        that: its tap and its writer then never wait for each other's interpreter lock."""
        exc = self._db.start(self._totals, strict)
        if exc is not None:
            with self._lock:
                self._faults.begin(exc)
            self._faults.log_start(exc)
        if thread:
            self._thread = threading.Thread(target=self._run, name="cri-proxy-recorder", daemon=True)
            self._thread.start()

    def update_session(self, **changes: Any) -> None:
        """Sets session fields learnt later (runtime_api, image_api...); written with the next batch."""
        with self._lock:
            self._db.writer.session = replace(self._db.writer.session, **changes)
            self._session_changed = True

    def close(self, timeout_s: float | None = None) -> None:
        """Writes what is queued (within the timeout), ends the session row, stops the thread."""
        timeout = self.options.close_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._faults.retry_at = 0.0
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout + self.options.busy_timeout_s + 1.0)
            if self._thread.is_alive():
                log.warning("the recording writer did not stop within %.1f s", timeout)
        else:
            while self.pump() is not None:
                pass
            self._finish()

    @property
    def session_id(self) -> int | None:
        return self._db.writer.session_id

    def backlog(self) -> tuple[int, bool]:
        """The bytes waiting for the writer, and whether it is healthy: what the worker's loop
        asks between blocks (`stats` makes the whole snapshot, under the lock, each time)."""
        with self._lock:
            return self._queue.waiting_bytes(), self._faults.healthy

    @property
    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                recorded=self._totals.recorded,
                lost=self._totals.lost,
                skipped=self._skipped,
                loss_episodes=self._totals.loss_episodes,
                queued=self._queue.waiting(),
                queued_bytes=self._queue.waiting_bytes(),
                healthy=self._faults.healthy,
            )
