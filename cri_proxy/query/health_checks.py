"""The recorded checks of `cri-proxy health` (query/health.py): relists, slow calls, failing
probes, error bursts, lost calls and upstream outages over a window.

Each reads as little as it can: the per-minute rollups (`call_minutes`) find the minutes
worth looking at (the longest calls, the non-zero exits, the errors), and only those
minutes' calls are read, through the started_unix index (model.clock.started_sql).
The PLEG relist is the kubelet's ListPodSandbox followed by ListContainers, once a second
(genericPLEG's relistPeriod); the kubelet reports the node NotReady ("PLEG is not healthy")
when a relist has not completed for 3 minutes (relistThreshold).
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Callable

from cri_proxy.model.clock import started_sql
from cri_proxy.model.cri import METHODS, parse_path
from cri_proxy.query.findings import Finding, Window
from cri_proxy.query.waterfall import human_ms

PLEG_LIMIT_MS = 180_000  # relistThreshold
RELIST_SLOW_MS = 1_000  # longer than the relist period
RELIST_GAP_WARN_MS = 10_000
DEADLINE_MS = 120_000  # the kubelet's --runtime-request-timeout default
SLOW_WARN_MS = 10_000
SLOW_INFO_MS = 1_000
BURST_WARN = 10  # failed calls in a burst of consecutive minutes
STREAMING = frozenset(parse_path(p).method for p, info in METHODS.items() if info.server_streaming)
NOT_STREAMING_SQL = ", ".join(f"'{m}'" for m in sorted(STREAMING))
Check = Callable[[sqlite3.Connection, Window], list[Finding]]


def relists(conn: sqlite3.Connection, win: Window) -> list[Finding]:
    """The relist rhythm: gaps between relists and how long each took."""
    sql = (f"SELECT method, started_unix, COALESCE(duration_ms, 0) FROM calls WHERE {started_sql(win.since_at)} "
           "AND +method IN ('ListPodSandbox', 'ListContainers') ORDER BY started_unix")  # fmt: skip
    rows = conn.execute(sql).fetchall()
    evidence = f'cri-proxy query "{sql}"'
    starts: list[float] = []
    took: list[float] = []
    for method, unix, ms in rows:
        if method == "ListPodSandbox":
            starts.append(unix)
            took.append(ms)
        elif took:  # the relist ends when its ListContainers does
            took[-1] = max(took[-1], (unix - starts[-1]) * 1000 + ms)
    if not starts:
        return [Finding("info", "relist", "no relists (ListPodSandbox) in the window: no kubelet PLEG here", evidence)]
    gaps = [(b - a) * 1000 for a, b in zip(starts, starts[1:])] + [(win.until_unix - starts[-1]) * 1000]
    worst_gap, worst = max(gaps), max(took)
    found = [Finding("info", "relist", f"{len(starts)} relists, every {human_ms(statistics.median(gaps) if gaps else 0)}"
                     f" (median), taking {human_ms(statistics.median(took))} (median), {human_ms(worst)} at most",
                     evidence)]  # fmt: skip
    for value, what in ((worst_gap, "went without a relist"), (worst, "a relist took")):
        if value >= PLEG_LIMIT_MS:
            found.append(Finding("critical", "relist", f"PLEG: the node {what} {human_ms(value)} (limit 3m: "
                                 "NotReady, 'PLEG is not healthy')", evidence, value))  # fmt: skip
    slow = [t for t in took if RELIST_SLOW_MS <= t < PLEG_LIMIT_MS]
    if slow:
        found.append(Finding("warning", "relist", f"{len(slow)} relists took over 1s (longest {human_ms(max(slow))}; "
                             "the kubelet relists every second)", evidence, max(slow)))  # fmt: skip
    if RELIST_GAP_WARN_MS <= worst_gap < PLEG_LIMIT_MS:
        found.append(Finding("warning", "relist", f"longest gap between relists {human_ms(worst_gap)} "
                             "(the kubelet relists every second)", evidence, worst_gap))  # fmt: skip
    return found


def slow_calls(conn: sqlite3.Connection, win: Window, limit: int = 3) -> list[Finding]:
    """The longest calls (streams aside), found through each minute's longest."""
    tops = conn.execute(
        f"SELECT minute, service, method, max_ms FROM call_minutes WHERE minute >= ? AND method NOT IN ({NOT_STREAMING_SQL}) "
        "AND max_ms >= ? ORDER BY max_ms DESC LIMIT ?", (win.minute, SLOW_INFO_MS, limit)).fetchall()  # fmt: skip
    found = []
    for minute, service, method, max_ms in tops:
        row = conn.execute(
            "SELECT id, started_at, COALESCE(pod_name, container_id, pod_sandbox_id, image, '') FROM calls "
            f"WHERE {started_sql(max(minute, win.since_at), minute)} AND +service = ? AND +method = ? "
            "AND duration_ms = ? LIMIT 1", (service, method, max_ms)).fetchone()
        if row is None:  # that minute's longest started before the window
            continue
        call_id, at, about = row
        severity = "critical" if max_ms >= DEADLINE_MS else "warning" if max_ms >= SLOW_WARN_MS else "info"
        past = " (past the kubelet's 2m deadline)" if max_ms >= DEADLINE_MS else ""
        found.append(Finding(severity, "slow_call", f"slow call: {method} {about} took {human_ms(max_ms)}{past} at {at}",
                             f"cri-proxy query \"SELECT * FROM calls WHERE id = {call_id}\"", max_ms))  # fmt: skip
    return found


def failing_probes(conn: sqlite3.Connection, win: Window) -> list[Finding]:
    """Exec probes that exited non-zero, by container (the minutes with non-zero exits only)."""
    minutes = [m for (m,) in conn.execute(
        "SELECT DISTINCT minute FROM call_minutes WHERE minute >= ? AND nonzero_exits > 0", (win.minute,))]
    by_container: dict[str, list[tuple[str, int]]] = {}
    for minute in minutes:
        for cid, at, code in conn.execute(
            "SELECT COALESCE(container_id, '?'), started_at, exit_code FROM calls WHERE "
            f"{started_sql(max(minute, win.since_at), minute)} AND +method = 'ExecSync' AND exit_code <> 0"):
            by_container.setdefault(cid, []).append((at, code))
    found = []
    for cid, fails in by_container.items():
        pod = conn.execute("SELECT pod_namespace || '/' || pod_name, json_extract(p.json, '$.config.metadata.name') "
                           "FROM calls AS c LEFT JOIN payloads AS p ON p.id = (SELECT m.payload_id FROM messages AS m "
                           "WHERE m.call_id = c.id AND m.direction = 'request' AND m.idx = 0) "  # not a LEFT JOIN on it:
                           # since schema 12 `messages` is a join, which SQLite would read whole there
                           "WHERE c.container_id = ? AND c.method = 'CreateContainer' LIMIT 1", (cid,)).fetchone()  # fmt: skip
        who = f"container {(pod[1] if pod else None) or cid[:13]}"
        who = f"{pod[0]} {who}" if pod and pod[0] else who
        codes = sorted({code for _, code in fails})
        found.append(Finding("warning", "failing_probe",
                             f"failing probe: {who}: {len(fails)} exec probes exited non-zero "
                             f"(exit {', '.join(map(str, codes))}), last at {fails[-1][0]}",
                             f"cri-proxy query \"SELECT * FROM failed_probes WHERE container_id = '{cid}' "
                             f"AND started_at >= '{win.since_at}'\"", len(fails)))  # fmt: skip
    return found


CHECKS: tuple[Check, ...] = (relists, slow_calls, failing_probes)
