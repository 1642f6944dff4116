"""cri_proxy/recorder/behind.py: when the recorder skims, from its backlog in bytes and the relay's stamps."""

from __future__ import annotations

from cri_proxy.recorder.behind import MAX_LAG_S, RESUME_AT, RESUME_LAG_S, SKIM_AT, Behind

MiB = 1 << 20


def test_a_backlog_within_the_budget_is_recorded_however_late() -> None:
    behind = Behind(64 * MiB)
    assert behind.feed(10.0, 1.0, int(64 * MiB * SKIM_AT)) is None  # 9 s late, three quarters full
    assert not behind.skimming and behind.lag == 9.0


def test_it_skims_once_the_backlog_passes_its_share_of_the_budget() -> None:
    behind = Behind(64 * MiB)
    assert behind.feed(1.0, 0.9, int(64 * MiB * SKIM_AT) + 1) is True
    assert behind.skimming and behind.backlog > 48 * MiB


def test_it_records_again_once_the_backlog_is_back_under_its_mark_not_at_nothing() -> None:
    behind = Behind(64 * MiB)
    behind.feed(1.0, 0.5, 60 * MiB)
    assert behind.feed(1.1, 0.6, int(64 * MiB * RESUME_AT) + 1) is None  # still skimming
    assert behind.feed(1.2, 0.7, int(64 * MiB * RESUME_AT)) is False  # half a second behind, 44.8 MiB waiting
    assert not behind.skimming
    assert behind.feed(1.3, 0.8, 46 * MiB) is None  # between the two marks: recording goes on


def test_small_calls_skim_on_lag_alone() -> None:
    behind = Behind(64 * MiB)
    assert behind.feed(1.0 + MAX_LAG_S - 0.1, 1.0, MiB) is None  # 1 MiB behind: fits, and not too late
    assert behind.feed(1.0 + MAX_LAG_S + 0.1, 1.0, MiB) is True
    assert behind.feed(2.0 + RESUME_LAG_S + 0.1, 2.0, 0) is None  # nothing waits, but still too late
    assert behind.feed(2.0 + RESUME_LAG_S - 0.1, 2.0, 0) is False
