"""The waterfall's pieces: durations in the unit that keeps them short, and bars placed on the
pod's time axis (the whole drawing is checked in test_pod.py)."""

from __future__ import annotations

import pytest

from cri_proxy.query.waterfall import BAR_WIDTH, bar, human_ms


@pytest.mark.parametrize(("ms", "text"), [(None, ""), (0.0, "0.0ms"), (1.25, "1.2ms"), (340.4, "340ms"),
                                          (2514.0, "2.51s"), (184_000.0, "3m04s"), (7_500_000.0, "2h05m"),
                                          (-4.0, "-4.0ms")])  # fmt: skip
def test_human_ms(ms: float | None, text: str) -> None:
    assert human_ms(ms) == text


def test_bars_sit_on_the_time_axis() -> None:
    first = bar(0, 10, 1000, "█", "green").plain
    last = bar(900, 1000, 1000, "█", "green").plain
    assert first == "█"  # a short step still gets one cell
    assert last == " " * (BAR_WIDTH * 9 // 10) + "█" * (BAR_WIDTH // 10)
    assert len(bar(0, 1000, 1000, "·", "cyan").plain) == BAR_WIDTH
    assert bar(0, 0, 0, "█", "red").plain == "█"  # a pod of one instant
