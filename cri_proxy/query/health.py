"""`cri-proxy health`: what is wrong on the node, from its recording, worst first.

Each check (query/health_checks.py, health_errors.py, health_live.py) reads the window (`--since`,
else the recording's last hour: the hour before its last call, so a copy of an old
recording answers too) and gives findings: one line each, with the SQL or command that shows
its evidence. Findings are `critical` (the node is or was NotReady, calls past the kubelet's
2-minute deadline), `warning` (something is failing: probes, error bursts, lost calls, slow
relists) or `info` (the rhythm, the slowest calls: context, not a fault). They are printed
worst first: by severity, then by how bad within it.

Exit status (cli/answers.py): 0 when no finding is worse than `info`, 1 when something is
unhealthy (a `warning` or `critical` finding), 2 when the recording cannot be read.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from cri_proxy.model.clock import utc_text
from cri_proxy.model.errors import StorageError

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


def check(conn: sqlite3.Connection, since_at: str | None, now: float) -> tuple[Window, list[Finding]]:
    """Every check's findings over the window, worst first. StorageError when the recording
    cannot answer."""
    from cri_proxy.query import health_checks, health_errors, health_live  # they import Finding from here

    try:
        win = window(conn, since_at, now)
        findings: list[Finding] = []
        for run in (*health_checks.CHECKS, *health_errors.CHECKS, health_live.open_calls):
            findings += run(conn, win)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the recording's health: {exc}") from exc
    return win, ordered(findings)


def write_text(out: TextIO, win: Window, findings: list[Finding]) -> None:
    verdict = "UNHEALTHY" if unhealthy(findings) else "healthy"
    out.write(f"{verdict}: {len(findings)} findings since {win.since_at} (UTC)\n")
    for finding in findings:
        out.write(f"{finding.severity:<8}  {finding.summary}\n          evidence: {finding.evidence}\n")


def write_json(out: TextIO, win: Window, findings: list[Finding]) -> None:
    body = {"since_at": win.since_at, "until_at": utc_text(win.until_unix), "unhealthy": unhealthy(findings),
            "findings": [f.to_json() for f in findings]}  # fmt: skip
    out.write(json.dumps(body, ensure_ascii=False, indent=1) + "\n")
