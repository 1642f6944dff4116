"""The recorder's handling thread yields the CPU to the relay while it keeps up.

On a node short of CPU (a burst of calls, something polling the runtime hard) the relay and
the recorder process compete for it, and every microsecond the recorder takes is one the
kubelet's calls wait for. Recording can wait a little: the relay has already forwarded the
bytes, the timings are the relay's, and the backlog is bounded (recorder.behind). So the
thread that records (recorder.loop.Worker's) runs at YIELD_NICENESS above the process's own
niceness while it trails the relay by less than FULL_LAG_S and its backlog is under
FULL_AT of --queue-mb; past either it takes its full share again until it is level
(LEVEL_LAG_S, LEVEL_AT), well before it would skim. The intake thread keeps the process's
niceness (it only copies bytes off the socket), and so do the metrics and spans threads.

Coming back needs CAP_SYS_NICE (root, as on a node) or an RLIMIT_NICE that allows it: a
thread may always lower its priority but not raise it again. Whether it can is tried first
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
        self.able = self.low > self.base and can_come_back(self.low)
        self.yielding = False
        self.changes = 0  # how often it went to its full share (for the log at the end)
        if self.low > self.base and not self.able:
            log.info("the recorder cannot lower its CPU priority and raise it again (no CAP_SYS_NICE, niceness %d): "
                     "it takes its full share of the CPU, beside the relay", self.base)
        else:
            self._set(True)

    def follow(self, lag: float, backlog: int) -> None:
        """The recorder trails by `lag` seconds with `backlog` bytes waiting."""
        if not self.able:
            return
        if self.yielding:
            if lag > FULL_LAG_S or backlog > self.full_at:
                self.changes += 1
                self._set(False)
        elif lag < LEVEL_LAG_S and backlog < self.level_at:
            self._set(True)

    def full(self) -> None:
        """Full share from now on (stopping: what is left is recorded as fast as it can be)."""
        if self.able and self.yielding:
            self._set(False)
        if self.able:
            log.info("the recorder yielded the CPU to the relay while it kept up; it took its full share again %d "
                     "times, past %.1f s behind or %d MiB of backlog", self.changes, FULL_LAG_S, self.full_at / (1 << 20))
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
