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
from typing import TextIO

from cri_proxy.model.clock import utc_text
from cri_proxy.model.errors import StorageError
from cri_proxy.query import health_checks, health_errors, health_live
from cri_proxy.query.findings import SEVERITIES, Finding, Window, ordered, unhealthy, window

__all__ = ["SEVERITIES", "Finding", "Window", "check", "ordered", "unhealthy", "window", "write_json", "write_text"]

def check(conn: sqlite3.Connection, since_at: str | None, now: float) -> tuple[Window, list[Finding]]:
    """Every check's findings over the window, worst first. StorageError when the recording
    cannot answer."""
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
