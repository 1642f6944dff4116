"""How far a replay has got, on stderr: a rich progress bar on a terminal, otherwise one line
now and then (after the first call, at every 5% of the calls and at least every 30 s), so that a replay of a long
recording in CI or under `nohup` says it is alive without flooding the log.

`run_replay` tells a `Progress` the total once it knows it, then each call's verdict; the CLI
reads `done`/`total` back for its "interrupted after" line. stdout stays the summary's.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from cri_proxy.replay.results import VERDICTS, Verdict

LINE_STEPS = 20  # a line at every 5% of the calls
LINE_EVERY_S = 30.0


class Progress:
    """Counts the calls; the base class shows nothing (a library caller's default)."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.counts: Counter[Verdict] = Counter()

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, verdict: Verdict) -> None:
        self.done += 1
        self.counts[verdict] += 1

    def finish(self) -> None:
        """The replay ended (completed or interrupted): nothing more will be shown."""

    def tally(self) -> str:
        return ", ".join(f"{self.counts[v]} {v.value}" for v in VERDICTS)


class LineProgress(Progress):
    """A line to `out` at the start, after the first call, at every 1/`LINE_STEPS` of the
    calls and at least every `LINE_EVERY_S` seconds (paced replays' calls may be minutes apart)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out
        self._step = -1
        self._started = self._last = time.monotonic()

    def start(self, total: int) -> None:
        super().start(total)
        self._started = self._last = time.monotonic()
        self._write(f"replay: {total} calls to go")

    def advance(self, verdict: Verdict) -> None:
        super().advance(verdict)
        step = self.done * LINE_STEPS // self.total if self.total else 0
        now = time.monotonic()
        if step != self._step or now - self._last >= LINE_EVERY_S:
            self._step, self._last = step, now
            share = 100.0 * self.done / self.total if self.total else 100.0
            self._write(f"replay: {self.done}/{self.total} calls ({share:.0f}%) in {now - self._started:.1f} s: "
                        f"{self.tally()}")  # fmt: skip

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class BarProgress(Progress):
    """rich's progress bar on the terminal `out`, with the verdicts so far beside it."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._bar = RichProgress(
            TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), TextColumn("{task.fields[tally]}"),
            console=Console(file=out), transient=True)  # fmt: skip
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        super().start(total)
        self._bar.start()
        self._task = self._bar.add_task("replay", total=total, tally="")

    def advance(self, verdict: Verdict) -> None:
        super().advance(verdict)
        if self._task is None:
            return
        if self.done % 64 == 0 or self.done == self.total:  # the bar redraws 10 times a second anyway
            self._bar.update(self._task, advance=1, tally=self.tally())
        else:
            self._bar.advance(self._task)

    def finish(self) -> None:
        self._bar.stop()


def for_stream(out: TextIO) -> Progress:
    """The bar on a terminal, the lines elsewhere."""
    return BarProgress(out) if out.isatty() else LineProgress(out)
