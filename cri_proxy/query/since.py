"""`--since`: a duration back from now (`90s`, `5m`, `2h`, `1d`) or a UTC time
(`2026-11-23 23:00`, `2026-11-23T23:00:00Z`), as the recording's `started_at` text."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from cri_proxy.model.errors import ConfigError
from cri_proxy.model.clock import utc_text

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def since_unix(value: str, now: float | None = None) -> float:
    """Seconds since the epoch that `value` names; ConfigError when it names none."""
    now = time.time() if now is None else now
    match = _DURATION.match(value)
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    text = value.strip().replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    for shape in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, shape).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ConfigError(f"--since {value!r}: give a duration (30s, 5m, 2h, 1d) or a UTC time (2026-11-23 23:00:00)")


def since_text(value: str, now: float | None = None) -> str:
    """`value` as `started_at` text, for `started_at >= ?`."""
    return utc_text(since_unix(value, now))
