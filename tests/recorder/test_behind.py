"""cri_proxy/recorder/behind.py: when the recorder thins or skims, from its backlog in bytes and the relay's stamps."""

from __future__ import annotations

from cri_proxy.recorder.behind import (MAX_LAG_S, RESUME_AT, RESUME_LAG_S, SKIM, SKIM_AT, THIN, THIN_AT, WHOLE,
                                       WHOLE_AT, Behind)

MiB = 1 << 20
BUDGET = 64 * MiB


def test_a_backlog_within_its_thin_mark_is_recorded_whole_however_late() -> None:
    behind = Behind(BUDGET)
    assert behind.feed(10.0, 1.0, int(BUDGET * THIN_AT)) is None  # 9 s late, half full
    assert behind.level == WHOLE and not behind.skimming and behind.lag == 9.0


def test_past_its_thin_mark_calls_are_thinned_not_lost() -> None:
    behind = Behind(BUDGET)
    assert behind.feed(1.0, 0.9, int(BUDGET * THIN_AT) + 1) == THIN
    assert not behind.skimming
    assert behind.feed(1.1, 0.9, int(BUDGET * SKIM_AT)) is None  # three quarters full: still thinning


def test_it_skims_once_the_backlog_passes_its_share_of_the_budget() -> None:
    behind = Behind(BUDGET)
    assert behind.feed(1.0, 0.9, int(BUDGET * SKIM_AT) + 1) == SKIM
    assert behind.skimming and behind.backlog > 48 * MiB


def test_it_thins_again_once_the_backlog_is_back_under_its_mark_not_at_nothing() -> None:
    behind = Behind(BUDGET)
    behind.feed(1.0, 0.5, 60 * MiB)
    assert behind.feed(1.1, 0.6, int(BUDGET * RESUME_AT) + 1) is None  # still skimming
    assert behind.feed(1.2, 0.7, int(BUDGET * RESUME_AT)) == THIN  # half a second behind, 44.8 MiB waiting
    assert not behind.skimming
    assert behind.feed(1.3, 0.8, 46 * MiB) is None  # between the two marks: thinning goes on
    assert behind.feed(1.4, 0.9, int(BUDGET * WHOLE_AT) + 1) is None  # above the whole mark: still thin
    assert behind.feed(1.5, 1.0, int(BUDGET * WHOLE_AT)) == WHOLE
    assert behind.feed(1.6, 1.1, int(BUDGET * THIN_AT)) is None  # between the marks: whole goes on


def test_small_calls_skim_on_lag_alone() -> None:
    behind = Behind(BUDGET)
    assert behind.feed(1.0 + MAX_LAG_S - 0.1, 1.0, MiB) is None  # 1 MiB behind: fits, and not too late
    assert behind.feed(1.0 + MAX_LAG_S + 0.1, 1.0, MiB) == SKIM
    assert behind.feed(2.0 + RESUME_LAG_S + 0.1, 2.0, 0) is None  # nothing waits, but still too late
    assert behind.feed(2.0 + RESUME_LAG_S - 0.1, 2.0, 0) == WHOLE  # and nothing waits: whole at once
