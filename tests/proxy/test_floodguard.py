"""SETTINGS and PING floods on a connection in use end with GOAWAY ENHANCE_YOUR_CALM; what
clients send in proportion to their calls (pings for data received, keepalives) does not."""

from __future__ import annotations

import asyncio
import logging
import pathlib

import pytest

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.floodguard import FORGIVEN_PER_S, FREE_BYTES, RATIO, ControlBudget
from tests.helpers.rawh2 import flood, opening, raw_frame

pytestmark = pytest.mark.timeout(60)

PING = raw_frame(h2.PING, 0, 0, b"12345678")
SETTINGS = raw_frame(h2.SETTINGS, 0, 0, b"\x00\x01\x00\x00\x10\x00")


def _walked(frames: bytes) -> h2.FrameWalker:
    walker = h2.FrameWalker()
    walker.track(frames, set(), True)
    return walker


def test_control_bytes_may_grow_with_what_the_connection_carries() -> None:
    data = raw_frame(h2.DATA, 0, 1, b"x" * 1000)
    budget = ControlBudget(now=0.0)
    received = _walked(data * 2000)  # 2 MB of replies, a ping sent for each DATA frame received
    assert budget.breach(_walked(PING * 2000), received, now=0.0) is None
    assert budget.breach(_walked(PING * (FREE_BYTES // len(PING) + 1)), _walked(b""), now=0.0) is not None
    idle = ControlBudget(now=0.0)  # a keepalive ping every 10 s for 30 days, and nothing else
    pings = 30 * 24 * 360
    assert pings * len(PING) > FREE_BYTES
    assert idle.breach(_walked(PING * pings), _walked(b""), now=30 * 24 * 3600.0) is None
    assert len(PING) / 10 < FORGIVEN_PER_S and RATIO * len(data) > len(PING)


def test_a_walk_gone_plain_keeps_its_counts() -> None:
    walker = h2.FrameWalker(raw=True)
    walker.feed(SETTINGS * 3 + raw_frame(h2.DATA, 0, 1, b"abc"))
    plain = walker.plain()
    plain.track(PING, set(), True)
    assert (plain.control, plain.walked) == (3 * len(SETTINGS) + len(PING), 3 * len(SETTINGS) + 12 + len(PING))


async def test_a_settings_flood_on_a_connection_in_use_is_told_to_calm_down(
        relay_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    # Issue 11.3: a SETTINGS flood from one client left other clients' calls unrecorded.
    caplog.set_level(logging.WARNING)
    head, tail = opening("/runtime.v1.RuntimeService/Version")
    limit = 20 * FREE_BYTES // len(SETTINGS)
    goaway, sent = await asyncio.to_thread(flood, str(relay_path), head + tail, SETTINGS, limit)
    assert goaway == h2.ERR_ENHANCE_YOUR_CALM and sent < limit
    [line] = [r.getMessage() for r in caplog.records if "a flood of SETTINGS and PING frames" in r.getMessage()]
    assert "GOAWAY ENHANCE_YOUR_CALM" in line
