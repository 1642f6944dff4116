"""The report's one time axis: the window of the selected calls cut into a few hundred
buckets of a round width, so every chart (rates, latency, problems, losses, relists) shares
the same x positions however long the recording is."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Round bucket widths in seconds, from a millisecond (a demo lasts one second) to a day.
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60,
          120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)  # fmt: skip
TARGET_BUCKETS = 240


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """Buckets [start + i * width, start + (i + 1) * width) for i in range(count)."""

    start: float
    width: float
    count: int

    def index(self, unix: float) -> int:
        """The bucket of `unix`, clamped into the axis."""
        i = int((unix - self.start) / self.width)
        return 0 if i < 0 else min(i, self.count - 1)

    def as_dict(self) -> dict[str, float | int]:
        return {"start": self.start, "width": self.width, "count": self.count}


def axis_for(first: float, last: float, target: int = TARGET_BUCKETS) -> TimeAxis:
    """An axis covering [first, last] with at most about `target` buckets of a round width."""
    span = max(last - first, 0.0)
    wanted = span / target
    width = next((s for s in _STEPS if s >= wanted), None)
    if width is None:  # longer than `target` days: whole days
        width = float(math.ceil(wanted / 86400) * 86400)
    start = math.floor(first / width) * width
    count = int((last - start) / width) + 1
    return TimeAxis(start, float(width), max(count, 1))


def percentile(sorted_values: list[float], p: int) -> float | None:
    """Nearest rank, as the SQL views compute it: the smallest value whose 1-based rank r
    satisfies r * 100 >= p * n."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, -(-p * n // 100))
    return sorted_values[rank - 1]
