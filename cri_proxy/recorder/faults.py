"""Database faults, as the recorder lives through them: one episode from the first failed
write to the first good one, logged when it starts and when it ends.

A failed batch is retried every `retry_interval_s` and counted lost after `max_attempts`
(the calls lost during the fault form one loss episode, "database: <why>"). A corrupt file is
moved aside (`<name>.corrupt-<UTC stamp>`, with its -wal and -shm) before the next attempt,
which starts a new one. Every method but `move_aside` runs under the recorder's lock.
"""

from __future__ import annotations

import logging
import os
import time

from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import LossEpisode

log = logging.getLogger(__name__)

_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: the file is fine, someone holds the lock


def is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _BUSY_CODES


class Faults:
    def __init__(self, path: str, options: RecorderOptions) -> None:
        self.path = path
        self.options = options
        self.since: float | None = None  # monotonic start of the current fault
        self.wall = 0.0
        self.reason = ""
        self.lost = 0  # calls lost during the current fault
        self.counted = False  # its loss episode is counted in the totals
        self.attempts = 0  # writes of the held batch so far
        self.retry_at = 0.0
        self.corrupt = False

    @property
    def healthy(self) -> bool:
        return self.since is None

    def begin(self, exc: BaseException) -> bool:
        """A fault starts (or goes on); True when it starts now."""
        self.retry_at = time.monotonic() + self.options.retry_interval_s
        if self.since is not None:
            return False
        self.since = time.monotonic()
        self.wall = time.time()
        self.reason = f"database: {exc}"
        self.retry_at = self.since + self.options.retry_interval_s
        return True

    def give_up(self, calls: int, stopping: bool) -> bool:
        """One more failed attempt at a batch of `calls`: True when it is counted lost now
        (too many attempts, or stopping), False when it is to be held and retried."""
        self.attempts += 1
        if self.attempts < self.options.max_attempts and not stopping:
            return False
        self.lost += calls
        self.attempts = 0
        return True

    def new_episode(self) -> bool:
        """Whether the calls just lost start this fault's loss episode (count it once)."""
        first = not self.counted
        self.counted = True
        return first

    def recovered(self) -> tuple[float | None, int, LossEpisode | None]:
        """A write worked: (when the fault began or None, calls lost, its finished episode)."""
        since, self.since = self.since, None
        lost, self.lost, self.counted = self.lost, 0, False
        self.attempts = 0
        episode = LossEpisode(self.wall, time.time(), self.reason, lost) if lost else None
        return since, lost, episode

    def open_episode(self, now: float) -> LossEpisode | None:
        """At stop: the episode of a fault still going on, if it lost calls."""
        if self.since is None or not self.lost:
            return None
        return LossEpisode(self.wall, now, self.reason, self.lost)

    def log_start(self, exc: BaseException) -> None:
        opts = self.options
        log.error(
            "recording to %s failed (%s): calls stay queued, retried every %.2g s and counted lost after %d attempts",
            self.path, exc, opts.retry_interval_s, opts.max_attempts,
        )  # fmt: skip

    def move_aside(self) -> None:
        """The file is corrupt: keep it (and its -wal, -shm) for a post-mortem, start afresh."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.corrupt-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(self.path + suffix, target + suffix)
            except FileNotFoundError:
                pass
        self.corrupt = False
        log.error("the recording database %s is corrupt: moved it to %s and started a new one", self.path, target)

