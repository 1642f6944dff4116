"""The recorder's handling thread yields the CPU to the relay while it keeps up.

On a node short of CPU (a burst of calls, something polling the runtime hard) the relay and
the recorder process compete for it, and every microsecond the recorder takes is one the
kubelet's calls wait for. Recording can wait a little: the relay has already forwarded the
bytes, the timings are the relay's, and the backlog is bounded (recorder.behind). So the
thread that records (recorder.loop.Worker's) runs at YIELD_NICENESS above the process's own
niceness while it trails the relay by less than FULL_LAG_S and its backlog is under
FULL_AT of --queue-mb, and while the relay sends it less than MAX_RATE_SHARE of the budget
a second; past any of these it takes its full share again until it is level (LEVEL_LAG_S,
LEVEL_AT, and that rate), well before it would skim. The intake thread keeps the process's
niceness (it only copies bytes off the socket), and so do the metrics and spans threads.

Coming back needs CAP_SYS_NICE or an RLIMIT_NICE that allows it (20 for nice 0: the systemd
unit, node/units.py, sets LimitNICE=20): a thread may always lower its priority but not
raise it again. Whether it can is tried first
on a throwaway thread; when it cannot, the recorder never yields, as before.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["Priority", "can_come_back"]

log = logging.getLogger(__name__)

# Nice 10 weighs about a tenth of nice 0 in the kernel's fair scheduler: when the CPU is short
# the relay, and whatever else runs at the service's niceness, goes first; when it is idle the
# recorder gets all of it. (Nice 19 did no better in bench.py --record.)
YIELD_NICENESS = 10
# Full share past these: a recording that trails by a second is still live to anyone reading
# it, and an eighth of the budget is far from the three quarters where skimming starts.
FULL_LAG_S = 1.0
FULL_AT = 1 / 8
# Level again: the relay sends every 20 ms, so a recorder that keeps up trails by tens of ms.
LEVEL_LAG_S = 0.1
LEVEL_AT = 1 / 64
# The intake needs the interpreter's lock for each read, and a yielding thread may hold it
# while it waits for the CPU: half a second of the relay's bytes must fit the quarter of the
# budget the proxy holds before it thins (proxy.recorder_behind). A flood of 26 KB replies
# (about 400 MB/s) left 400 calls thinned when the thread yielded through it; small calls
# are a few MB/s.
MAX_RATE_SHARE = 1 / 4 / 0.5
RATE_WINDOW_S = 0.25  # the rate is measured over at least this long


def can_come_back(niceness: int) -> bool:
    """Whether a thread of this process may go to `niceness` and back to where it is."""
    result: list[bool] = []

    def attempt() -> None:
        tid = threading.get_native_id()
        base = os.getpriority(os.PRIO_PROCESS, tid)
        try:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
            os.setpriority(os.PRIO_PROCESS, tid, base)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, name="recorder-priority-probe")
    thread.start()
    thread.join()
    return result == [True]


class Priority:
    """The niceness of the thread that made it, following the backlog (`follow`)."""

    def __init__(self, budget_bytes: int) -> None:
        self.tid = threading.get_native_id()
        self.base = os.getpriority(os.PRIO_PROCESS, self.tid)
        self.low = min(19, self.base + YIELD_NICENESS)
        self.full_at = budget_bytes * FULL_AT
        self.level_at = budget_bytes * LEVEL_AT
        self.max_rate = budget_bytes * MAX_RATE_SHARE
        self.rate = 0.0  # bytes a second from the relay, over the last window
        self._window: tuple[float, int] | None = None  # its start: (monotonic, bytes come in)
        self.able = self.low > self.base and can_come_back(self.low)
        self.yielding = False
        self.changes = 0  # how often it went to its full share (for the log at the end)
        if self.able:
            self._set(True)
        elif self.low > self.base:  # at 19 already there is nothing to yield, nor to say
            log.info("the recorder cannot lower its CPU priority and raise it again (no CAP_SYS_NICE, niceness %d): "
                     "it takes its full share of the CPU, beside the relay", self.base)

    def follow(self, lag: float, backlog: int, arrived: int, now: float) -> None:
        """The recorder trails by `lag` seconds with `backlog` bytes waiting, `arrived` bytes
        come in from the relay so far, at `now` (monotonic)."""
        if not self.able:
            return
        if self._window is None:
            self._window = (now, arrived)
        elif now - self._window[0] >= RATE_WINDOW_S:
            self.rate = (arrived - self._window[1]) / (now - self._window[0])
            self._window = (now, arrived)
        busy = self.rate > self.max_rate
        if self.yielding:
            if lag > FULL_LAG_S or backlog > self.full_at or busy:
                self.changes += 1
                self._set(False)
        elif lag < LEVEL_LAG_S and backlog < self.level_at and not busy:
            self._set(True)

    def full(self) -> None:
        """Full share from now on (stopping: what is left is recorded as fast as it can be)."""
        if self.able and self.yielding:
            self._set(False)
        if self.able:
            log.info("the recorder yielded the CPU to the relay while it kept up; it took its full share again %d "
                     "times, past %.1f s behind, %d MiB of backlog or %d MiB/s from the relay", self.changes,
                     FULL_LAG_S, self.full_at / (1 << 20), self.max_rate / (1 << 20))
        self.able = False

    def _set(self, yielding: bool) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, self.tid, self.low if yielding else self.base)
        except OSError as exc:  # the limit changed under it: stay where it is
            log.warning("the recorder cannot change its CPU priority any more (%s): it stays at niceness %d", exc,
                        os.getpriority(os.PRIO_PROCESS, self.tid))
            self.able = False
            return
        self.yielding = yielding
