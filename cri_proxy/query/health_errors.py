"""The failure checks of `cri-proxy health` (query/health.py): error bursts, lost calls and
upstream outages.

An error burst is a run of consecutive minutes with failed calls (the failure rule of
`errors`; the streams the kubelet holds open and cancels, GetContainerEvents, are left out),
found in `call_minutes` and described from the failed calls themselves (those minutes' calls,
through the started_unix index). An upstream outage is a run of calls the runtime could not be reached for: status
UNAVAILABLE or the connection closed under the call, less than 30 s apart.
"""

from __future__ import annotations

import sqlite3

from cri_proxy.model.clock import started_sql
from cri_proxy.model.status import FAILED_SQL
from cri_proxy.query.findings import Finding, Window
from cri_proxy.query.health_checks import NOT_STREAMING_SQL, BURST_WARN
from cri_proxy.query.waterfall import human_ms

OUTAGE_GAP_S = 30.0


def _runs(minutes: list[str]) -> list[tuple[str, str]]:
    """Consecutive 'YYYY-MM-DD HH:MM' minutes as (first, last) runs (minutes sorted)."""
    from datetime import datetime, timedelta

    runs: list[tuple[str, str]] = []
    for minute in minutes:
        if runs and datetime.fromisoformat(runs[-1][1]) + timedelta(minutes=1) == datetime.fromisoformat(minute):
            runs[-1] = (runs[-1][0], minute)
        else:
            runs.append((minute, minute))
    return runs


def error_bursts(conn: sqlite3.Connection, win: Window, limit: int = 5) -> list[Finding]:
    rows = conn.execute(
        f"SELECT minute FROM call_minutes WHERE minute >= ? AND method NOT IN ({NOT_STREAMING_SQL}) "
        "GROUP BY minute HAVING SUM(errors) > 0 ORDER BY minute", (win.minute,)).fetchall()  # fmt: skip
    found = []
    for first, last in _runs([m for (m,) in rows]):
        sql = (f"SELECT method, COALESCE(status_name, outcome), COUNT(*) FROM calls WHERE {FAILED_SQL} "
               f"AND {started_sql(max(first, win.since_at), last)} "
               f"AND +method NOT IN ({NOT_STREAMING_SQL}) GROUP BY 1, 2 ORDER BY 3 DESC")  # fmt: skip
        kinds = conn.execute(sql).fetchall()
        failed = sum(n for *_, n in kinds)
        if not failed:
            continue
        top = ", ".join(f"{method} {status} ×{n}" for method, status, n in kinds[:3])
        span = first if first == last else f"{first}-{last[11:]}"
        severity = "warning" if failed >= BURST_WARN else "info"
        found.append(Finding(severity, "error_burst", f"{failed} failed calls {span}: {top}",
                             f'cri-proxy query "{sql}"', failed))  # fmt: skip
    return sorted(found, key=lambda f: -f.weight)[:limit]


def losses(conn: sqlite3.Connection, win: Window) -> list[Finding]:
    """Calls the recorder saw but could not record: its losses, and a live session's counter
    running ahead of them (an episode still going on)."""
    sql = ("SELECT session_id, started_at, ended_at, reason, calls_lost FROM losses "
           f"WHERE COALESCE(ended_at, started_at) >= '{win.since_at}' ORDER BY calls_lost DESC")  # fmt: skip
    found = [Finding("warning", "losses", f"{lost} calls NOT recorded ({reason}) from {start} to {end or 'now'}"
                     f" (session {session})", f'cri-proxy query "{sql}"', lost)
             for session, start, end, reason, lost in conn.execute(sql)]  # fmt: skip
    ahead = ("SELECT s.id, s.calls_lost - COALESCE((SELECT SUM(l.calls_lost) FROM losses AS l WHERE l.session_id = s.id), 0) "
             "FROM sessions AS s WHERE s.ended_at IS NULL")  # fmt: skip
    for session, lost in conn.execute(ahead):
        if lost and lost > 0:
            found.append(Finding("warning", "losses", f"{lost} calls NOT recorded so far in the running session "
                                 f"{session} (an episode not yet over)", f'cri-proxy query "{ahead}"', lost))  # fmt: skip
    return found


def upstream_outages(conn: sqlite3.Connection, win: Window) -> list[Finding]:
    sql = (f"SELECT started_unix, started_at, upstream FROM calls WHERE {FAILED_SQL} AND {started_sql(win.since_at)} "
           f"AND (status_code = 14 OR outcome = 'connection_closed') AND +method NOT IN ({NOT_STREAMING_SQL}) "
           "ORDER BY started_at")  # fmt: skip
    episodes: list[list[tuple[float, str, str | None]]] = []
    for unix, at, upstream in conn.execute(sql):
        if episodes and unix - episodes[-1][-1][0] < OUTAGE_GAP_S:
            episodes[-1].append((unix, at, upstream))
        else:
            episodes.append([(unix, at, upstream)])
    found = []
    for calls in episodes:
        length = (calls[-1][0] - calls[0][0]) * 1000
        where = calls[0][2] or "the runtime"
        found.append(Finding("critical" if length >= 60_000 else "warning", "upstream",
                             f"upstream {where} unreachable: {len(calls)} calls UNAVAILABLE or cut off from "
                             f"{calls[0][1]} for {human_ms(length)}", f'cri-proxy query "{sql}"', len(calls)))  # fmt: skip
    return found


CHECKS = (error_bursts, losses, upstream_outages)
