"""cri_proxy/query/since.py: --since as a duration back from now or a UTC time."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.query.since import since_text, since_unix

NOW = 1_800_000_000.0
T = datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(("value", "back"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400),
                                             ("250ms", 0.25), (" 1.5 m ", 90), ("45", 45)])
def test_durations_count_back_from_now(value: str, back: float) -> None:
    assert since_unix(value, NOW) == pytest.approx(NOW - back)


@pytest.mark.parametrize("value", ["2026-11-23 23:00", "2026-11-23T23:00:00Z", "2026-11-23 23:00:00+00:00",
                                   "2026-11-23 23:00:00.000"])
def test_utc_times(value: str) -> None:
    assert since_unix(value, NOW) == T


def test_a_date_alone_is_its_midnight() -> None:
    assert since_unix("2026-11-24", NOW) == T + 3600


@pytest.mark.parametrize("value", ["yesterday", "5 minutes", "-5m", "2026-13-01", "23:00", ""])
def test_garbage_is_refused_with_the_accepted_shapes(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^--since .*give a duration \(30s, 5m, 2h, 1d\) or a UTC time"):
        since_unix(value, NOW)


def test_since_text_is_started_at_text() -> None:
    assert since_text("2026-11-23 23:00", NOW).startswith("2026-11-23")
    assert since_text("1h", T + 3600) == since_text("2026-11-23 23:00", NOW)
