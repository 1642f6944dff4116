"""A proxy run as the recording knows it: the session, its loss episodes, the recorder's counters.

Shared by the relay process (which starts the recorder and reads its counters over the
link), the recorder process (which writes them) and the store (which maps them to rows).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SessionInfo:
    """What a `sessions` row says about one proxy run (counters are kept by the recorder)."""

    listen: str | None = None
    runtime_endpoint: str | None = None
    image_endpoint: str | None = None
    runtime_api: str | None = None
    image_api: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started_unix: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)  # the proxy's: made where the run starts, not in the recorder


@dataclass(frozen=True, slots=True)
class LossEpisode:
    """A stretch of time in which calls were lost, and why."""

    started_unix: float
    ended_unix: float | None
    reason: str
    calls_lost: int


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """The recorder's counters as the relay process sees them."""

    recorded: int
    lost: int
    skipped: int  # declined by the keep policy
    loss_episodes: int
    queued: int
    queued_bytes: int
    healthy: bool  # the last write (or open) succeeded
