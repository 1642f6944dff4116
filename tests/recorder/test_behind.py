"""cri_proxy/recorder/behind.py: when the recorder skims, from the relay's stamps and its own clock."""

from __future__ import annotations

import pytest

from cri_proxy.recorder.behind import CAUGHT_UP_S, MAX_LAG_S, RATE_WINDOW_S, Behind

MiB = 1 << 20


def steady(behind: Behind, start: float, seconds: float, bytes_per_s: float, lag: float) -> list[bool | None]:
    """Chunks of 10 ms at a steady rate, each read `lag` seconds after the relay forwarded it."""
    changes = []
    for i in range(int(seconds * 100)):
        relayed = start + i / 100
        changes.append(behind.feed(relayed + lag, relayed, int(bytes_per_s / 100)))
    return changes


def test_a_recorder_close_behind_never_skims() -> None:
    behind = Behind(64 * MiB)
    assert set(steady(behind, 0.0, 5.0, 50 * MiB, 0.05)) == {None}
    assert behind.rate == pytest.approx(50 * MiB, rel=0.01)


def test_it_skims_once_the_backlog_reaches_half_the_proxys_buffer() -> None:
    behind = Behind(64 * MiB)
    steady(behind, 0.0, 1.0, 58 * MiB, 0.0)  # the rate is known
    chunk = int(58 * MiB / 100)
    assert behind.feed(1.0 + 0.5, 1.0, chunk) is None  # 0.5 s at 58 MiB/s: 29 MiB, under 32
    assert behind.feed(1.01 + 0.6, 1.01, chunk) is True  # 35 MiB: over half of 64
    assert behind.skimming


def test_a_flood_of_large_replies_after_a_pause_is_seen_within_tens_of_milliseconds() -> None:
    behind = Behind(64 * MiB)
    steady(behind, 0.0, 1.0, 10_000, 0.0)  # a quiet node
    changes = []
    for i in range(200):  # then 1 MiB every millisecond, the recorder reading each 0.05 s late
        relayed = 5.0 + i / 1000
        changes.append(behind.feed(relayed + 0.05, relayed, MiB))
        if changes[-1]:
            break
    assert changes[-1] is True and len(changes) <= RATE_WINDOW_S * 1000 / 2  # before 64 MiB were shipped


def test_small_calls_skim_on_lag_alone() -> None:
    behind = Behind(64 * MiB)
    steady(behind, 0.0, 1.0, 1 * MiB, 0.0)
    assert behind.feed(1.0 + MAX_LAG_S - 0.1, 1.0, 100) is None  # 5 MiB behind: fits, and not too late
    assert behind.feed(1.0 + MAX_LAG_S + 0.1, 1.0, 100) is True


def test_it_stops_skimming_as_soon_as_it_has_caught_up() -> None:
    behind = Behind(64 * MiB)
    assert behind.feed(MAX_LAG_S + 1.0, 0.0, 100) is True
    assert behind.feed(2.0 + CAUGHT_UP_S * 2, 2.0, 100) is None  # still behind
    assert behind.feed(2.1 + CAUGHT_UP_S / 2, 2.1, 100) is False  # no minimum length: at once
    assert not behind.skimming
    assert behind.feed(2.2, 2.2, 100) is None
