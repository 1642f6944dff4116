"""cri_proxy/report/timeaxis.py: the shared time axis and the nearest-rank percentile."""

from __future__ import annotations

import pytest

from cri_proxy.report.timeaxis import TARGET_BUCKETS, axis_for, percentile


@pytest.mark.parametrize(("span", "width"), [(1.0, 0.005), (3600.0, 15), (86400 * 30, 10800), (0.0, 0.001)])
def test_a_round_width_and_at_most_about_the_target_buckets(span: float, width: float) -> None:
    axis = axis_for(1_800_000_000.3, 1_800_000_000.3 + span)
    assert axis.width == width
    assert 1 <= axis.count <= TARGET_BUCKETS + 2
    assert axis.start <= 1_800_000_000.3 < axis.start + axis.width  # the first call is in bucket 0
    assert axis.index(1_800_000_000.3 + span) == axis.count - 1


def test_longer_than_the_steps_uses_whole_days() -> None:
    axis = axis_for(0.0, 86400.0 * 1000)
    assert axis.width % 86400 == 0 and axis.count <= TARGET_BUCKETS + 1


def test_index_is_clamped_into_the_axis() -> None:
    axis = axis_for(100.0, 200.0)
    assert axis.index(0.0) == 0
    assert axis.index(10_000.0) == axis.count - 1


def test_percentile_is_the_views_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([], 50) is None
