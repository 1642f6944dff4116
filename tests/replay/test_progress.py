"""replay/progress.py: the lines written where stderr is not a terminal, and rich's bar on a
real terminal (a pty)."""

from __future__ import annotations

import io
import os
import select

import pytest

from cri_proxy.replay.progress import BarProgress, LineProgress, Progress, for_stream
from cri_proxy.replay.results import Verdict

pytestmark = pytest.mark.timeout(20)


def test_lines_at_the_start_and_every_5_percent() -> None:
    out = io.StringIO()
    progress = LineProgress(out)
    progress.start(40)
    for i in range(40):
        progress.advance(Verdict.DIFFERED if i == 7 else Verdict.MATCHED)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "replay: 40 calls to go"
    assert len(lines) == 1 + 1 + 20  # the first call, then one per 2 calls: 5% of 40
    assert lines[1].startswith("replay: 1/40 calls (2%) in ")
    assert [line.split(" calls")[0] for line in lines[2:5]] == ["replay: 2/40", "replay: 4/40", "replay: 6/40"]
    assert lines[-1].startswith("replay: 40/40 calls (100%) in ")
    assert lines[-1].endswith(": 39 matched, 1 differed, 0 failed, 0 skipped")
    assert (progress.done, progress.total) == (40, 40)


def test_a_small_replay_has_a_line_per_call_and_the_quiet_base_counts() -> None:
    out = io.StringIO()
    progress = LineProgress(out)
    progress.start(3)
    for _ in range(3):
        progress.advance(Verdict.SKIPPED)
    assert [line.split(" calls")[0] for line in out.getvalue().splitlines()] == [
        "replay: 3", "replay: 1/3", "replay: 2/3", "replay: 3/3"]
    quiet = Progress()
    quiet.start(2)
    quiet.advance(Verdict.FAILED)
    assert (quiet.done, quiet.tally()) == (1, "0 matched, 0 differed, 1 failed, 0 skipped")


def test_a_terminal_gets_richs_bar() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert isinstance(for_stream(tty), BarProgress) and isinstance(for_stream(io.StringIO()), LineProgress)
            bar = BarProgress(tty)
            bar.start(3)
            for _ in range(3):
                bar.advance(Verdict.MATCHED)
            bar.finish()
            tty.flush()
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        os.close(slave)
    assert b"3/3" in shown and b"3 matched" in shown
