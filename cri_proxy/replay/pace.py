"""Pacing: `fast` (back to back), `original` (the recorded gaps) or `xN` (N times faster)."""

from __future__ import annotations

import asyncio
import time

from cri_proxy.model.errors import ConfigError


def parse_pace(value: str) -> float | None:
    """The speed factor (1.0 for original), None for fast."""
    text = value.strip().lower()
    if text == "fast":
        return None
    if text == "original":
        return 1.0
    if text.startswith("x"):
        try:
            speed = float(text[1:])
        except ValueError:
            speed = 0.0
        if speed > 0:
            return speed
    raise ConfigError(f"--pace {value!r}: give fast, original or xN (x2 is twice as fast, x0.5 half as fast)")


class Pacer:
    """Waits until a recorded call's moment on the replay's clock."""

    def __init__(self, speed: float | None, first_unix: float) -> None:
        self.speed = speed
        self.first_unix = first_unix
        self.start = time.monotonic()

    async def wait_for(self, started_unix: float) -> None:
        if self.speed is None:
            return
        due = self.start + (started_unix - self.first_unix) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
