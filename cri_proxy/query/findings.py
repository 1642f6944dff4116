"""What `cri-proxy health`'s checks find, and the window they look at: the types every check
(query/health_checks.py, health_errors.py, health_live.py) returns and query/health.py orders
and prints.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from cri_proxy.model.clock import utc_text

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str  # one of SEVERITIES
    kind: str  # relist, slow_call, open_calls, failing_probe, error_burst, losses, upstream
    summary: str  # one line
    evidence: str  # the SQL (or command) that shows it
    weight: float = 0.0  # how bad within its severity: bigger first

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Window:
    since_at: str  # started_at text: calls with started_at >= since_at
    until_unix: float  # the window's end: now for a live recording, else the last call's start

    @property
    def minute(self) -> str:
        """The since_at minute as call_minutes keys it (rows of minutes wholly or partly inside)."""
        return self.since_at[:16]


def window(conn: sqlite3.Connection, since_at: str | None, now: float) -> Window:
    """The window `since_at` opens (None: the recording's last hour)."""
    last = conn.execute("SELECT MAX(started_unix) FROM calls").fetchone()[0]
    live = conn.execute("SELECT 1 FROM sessions WHERE ended_at IS NULL LIMIT 1").fetchone() is not None
    until = now if live or last is None else float(last)
    return Window(since_at if since_at is not None else utc_text(until - 3600), until)


def ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), -f.weight))


def unhealthy(findings: list[Finding]) -> bool:
    return any(f.severity != "info" for f in findings)
