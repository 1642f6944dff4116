"""cri_proxy/replay/pace.py: --pace values, and the pacer that keeps the recorded gaps."""

from __future__ import annotations

import time

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.replay.pace import Pacer, parse_pace

pytestmark = pytest.mark.timeout(10)


def test_pace_values() -> None:
    assert parse_pace("fast") is None and parse_pace("original") == 1.0 and parse_pace("x2.5") == 2.5
    for bad in ("x0", "xx", "2", "slow"):
        with pytest.raises(ConfigError):
            parse_pace(bad)


@pytest.mark.parametrize(("value", "speed"), [(" Fast ", None), ("ORIGINAL", 1.0), ("x0.5", 0.5), ("x10", 10.0)])
def test_pace_spellings(value: str, speed: float | None) -> None:
    assert parse_pace(value) == speed


def test_a_bad_pace_names_the_flag_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^--pace 'x-1': give fast, original or xN"):
        parse_pace("x-1")


async def test_fast_never_waits_and_a_speed_scales_the_gaps() -> None:
    fast = Pacer(None, first_unix=1000.0)
    start = time.monotonic()
    await fast.wait_for(1e9)  # however far ahead the call was recorded
    assert time.monotonic() - start < 0.05
    paced = Pacer(10.0, first_unix=1000.0)  # ten times faster: 2 s recorded is 0.2 s
    await paced.wait_for(1002.0)
    assert time.monotonic() - paced.start >= 0.2
    before = time.monotonic()
    await paced.wait_for(1001.0)  # a call already due goes at once
    assert time.monotonic() - before < 0.05
