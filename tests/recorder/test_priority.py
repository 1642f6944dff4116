"""The recorder thread's CPU priority (recorder.priority): yielding to the relay while it
keeps up, its full share once it trails, and never a step it could not take back; alone,
and in a Worker fed over a real link. The niceness is the kernel's, read back from the
thread itself."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.priority import (FULL_AT, FULL_LAG_S, LEVEL_AT, MAX_RATE_SHARE, YIELD_NICENESS, Priority,
                                         can_come_back)
from tests.helpers.calls import rows
from tests.helpers.worker_link import linked_worker

pytestmark = pytest.mark.timeout(30)

BUDGET = 64 << 20


def thread_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def on_a_thread(work: Callable[[], object]) -> object:
    """`work` run on a thread of its own (whose niceness dies with it), its result returned."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join(20)
    return out[0]


able = pytest.mark.skipif(not can_come_back(min(19, os.nice(0) + YIELD_NICENESS)),
                          reason="this user cannot raise a thread's priority again (no CAP_SYS_NICE)")


@able
def test_it_yields_while_level_takes_its_full_share_when_behind_or_busy_and_yields_again_once_level() -> None:
    fast = int(BUDGET * MAX_RATE_SHARE * 0.3 * 1.5)  # bytes in 0.3 s: half as much again as the rate allows

    def steps() -> list[tuple[bool, int]]:
        priority = Priority(BUDGET)
        seen = [(priority.yielding, thread_niceness())]
        for lag, backlog, arrived, now in [
                (0.5, 1 << 20, 0, 0.0),  # behind, within every bound: still yielding
                (FULL_LAG_S + 0.1, 0, 0, 0.1),  # trails too long
                (0.5, 0, 0, 0.2),  # not level yet
                (0.01, 0, 0, 0.3),  # level (and nothing came in over 0.3 s)
                (0.01, int(BUDGET * FULL_AT) + 1, 0, 0.35),  # too many bytes waiting
                (0.01, int(BUDGET * LEVEL_AT) + 1, 0, 0.4),  # fewer, not yet level
                (0.01, 0, 0, 0.45),  # level
                (0.01, 0, fast, 0.6),  # the relay sends too much a second
                (0.01, 0, fast, 0.7),  # a window too short to tell: still busy
                (0.01, 0, fast + 1000, 0.9)]:  # a quiet window: level
            priority.follow(lag, backlog, arrived, now)
            seen.append((priority.yielding, thread_niceness()))
        priority.full()  # stopping
        priority.follow(0.0, 0, fast + 1000, 2.0)  # and stays there
        seen.append((priority.yielding, thread_niceness()))
        return seen

    base = thread_niceness()
    low = min(19, base + YIELD_NICENESS)
    yielding, full = (True, low), (False, base)
    assert on_a_thread(steps) == [yielding, yielding, full, full, yielding, full, full, yielding, full, full,
                                  yielding, full]
    assert thread_niceness() == base  # other threads keep theirs


@able
def test_a_thread_that_already_runs_at_the_lowest_priority_stays_there() -> None:
    def at_19() -> tuple[bool, bool, int]:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        priority = Priority(BUDGET)
        priority.follow(FULL_LAG_S + 1, 0, 0, 0.0)
        return priority.able, priority.yielding, thread_niceness()

    assert on_a_thread(at_19) == (False, False, 19)


PROBE = """
import logging, os, sys
sys.path.insert(0, sys.argv[1])  # imported as root: nobody may not read the interpreter's tree
from cri_proxy.recorder.priority import Priority, can_come_back
os.setgid(65534)
os.setuid(65534)
logging.basicConfig(level=logging.INFO)
priority = Priority(64 << 20)
print(can_come_back(10), priority.able, priority.yielding, os.getpriority(os.PRIO_PROCESS, 0))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_unprivileged_recorder_never_yields() -> None:
    """As nobody, a thread may lower its priority but not raise it again: the recorder then
    never yields, rather than be left at a priority it could not leave when it falls behind."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", PROBE, root], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False", str(os.nice(0))]
    assert "cannot lower its CPU priority and raise it again" in out.stderr


@able
def test_the_recording_thread_yields_while_level_and_takes_its_full_share_while_behind(
        tmp_path: pathlib.Path) -> None:
    """The worker's own thread (not its intake) runs YIELD_NICENESS lower while the calls it
    records were relayed moments ago, and at the process's niceness once they were relayed
    more than FULL_LAG_S before it got to them, until it is level again."""
    ours = os.nice(0)
    for proxy, path, _ in linked_worker(tmp_path, SessionInfo(), None):
        assert proxy.worker is not None and proxy.worker_thread.native_id is not None
        tid = proxy.worker_thread.native_id
        proxy.call(1)
        proxy.stats_until(recorded=1)
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, ours + YIELD_NICENESS)
        proxy.call(3, ago=FULL_LAG_S + 0.5)
        proxy.stats_until(recorded=2)
        assert os.getpriority(os.PRIO_PROCESS, tid) == ours
        proxy.call(5)
        proxy.stats_until(recorded=3)
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, ours + YIELD_NICENESS)
        intake = proxy.worker.intake
        assert intake is not None and intake._thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, intake._thread.native_id) == ours
        assert rows(path, "SELECT count(*), sum(status_code = 5) FROM calls") == [(3, 3)]
