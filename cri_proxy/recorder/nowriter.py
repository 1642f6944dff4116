"""The recorder process without a database: `cri-proxy run --metrics-listen` (or `--otlp-endpoint`) and no `--db`.

The worker speaks to its recorder through a handful of calls (submit, pump, stats, close...);
this one keeps nothing and opens no file, so the process carries the tap and the metrics
and spans peers but neither sqlite3 nor a writer. Its counters still say what was lost
before a call could be observed (the recorder fell behind, or a recorder died).
"""

from __future__ import annotations

from typing import Any

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.session import LossEpisode, RecorderStats


class NoWriter:
    """A sink that drops the calls it is given: the telemetry peers have seen them already."""

    session_id: int | None = None
    fault: str | None = None  # nothing to fail

    def __init__(self) -> None:
        self._lost = 0
        self._episodes = 0

    def submit(self, call: RecordedCall) -> None:
        pass

    def lost_elsewhere(self, calls: int, episode: LossEpisode | None = None, starts: bool = False) -> None:
        self._lost += calls
        self._episodes += 1 if starts else 0

    def carry_on(self, stats: RecorderStats) -> None:
        self._lost, self._episodes = stats.lost, stats.loss_episodes

    def update_session(self, **changes: Any) -> None:
        pass

    def pump(self) -> float | None:
        return None  # nothing is ever due

    def close(self, timeout_s: float | None = None) -> None:
        pass

    def backlog(self) -> tuple[int, bool]:
        return 0, True  # nothing waits: there is no writer

    @property
    def stats(self) -> RecorderStats:
        return RecorderStats(recorded=0, lost=self._lost, skipped=0, loss_episodes=self._episodes, queued=0,
                             queued_bytes=0, healthy=True)
