"""`cri-proxy stats`: per-method counts, failures, latency percentiles and bytes, and what
each proxy run recorded and LOST (sessions.calls_lost, the losses table).

The per-method numbers are the `method_stats` view's (same failure rule, same nearest-rank
percentiles: pXX is the smallest duration whose rank r satisfies r * 100 >= XX * n, among
calls with a duration), computed here over the calls `--since` and `--session` select, and
with the bytes each way, which the view leaves out. `nonzero_exits` counts the ExecSync
calls whose command exited non-zero (`calls.exit_code`): failing probes, which are not
call errors since their status is OK.

Without `--since` and `--session` the counts come from the per-minute rollups
(`call_minutes`) and each percentile is one step r entries into the index
calls(method, duration_ms) (query/ranks.py): a million calls answer in milliseconds instead
of seconds. With them, the calls selected are read, as before.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from cri_proxy.model.clock import started_sql
from cri_proxy.model.errors import StorageError
from cri_proxy.model.status import FAILED_SQL as FAILED
from cri_proxy.query.output import Section
from cri_proxy.query.ranks import whole_recording_methods
from cri_proxy.query.tail import short_method
from cri_proxy.store.selection import check_session

METHOD_COLUMNS = ["method", "calls", "errors", "error_rate", "nonzero_exits", "p50_ms", "p95_ms", "p99_ms",
                  "max_ms", "request_bytes", "response_bytes"]  # fmt: skip
SESSION_COLUMNS = ["session", "started_at", "ended_at", "hostname", "pid", "calls_recorded",
                   "calls_lost", "loss_episodes", "calls_in_file"]  # fmt: skip
LOSS_COLUMNS = ["loss", "session", "started_at", "ended_at", "reason", "calls_lost"]


def _pct(p: int) -> str:
    return f"MIN(CASE WHEN rank <= timed AND rank * 100 >= timed * {p} THEN duration_ms END)"


_METHODS = f"""
WITH filtered AS (
    SELECT service, method, duration_ms, request_bytes, response_bytes, {FAILED} AS failed,
           (exit_code IS NOT NULL AND exit_code <> 0) AS nonzero_exit
    FROM calls WHERE {{where}}
), ranked AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY service, method
                                 ORDER BY duration_ms IS NULL, duration_ms) AS rank,
           COUNT(duration_ms) OVER (PARTITION BY service, method) AS timed
    FROM filtered
)
SELECT service, method, COUNT(*), SUM(failed), ROUND(1.0 * SUM(failed) / COUNT(*), 4),
       SUM(nonzero_exit), {_pct(50)}, {_pct(95)}, {_pct(99)}, MAX(duration_ms),
       SUM(request_bytes), SUM(response_bytes)
FROM ranked
GROUP BY service, method
ORDER BY COUNT(*) DESC, service, method
"""

_SESSIONS = """
SELECT s.id, s.started_at, s.ended_at, s.hostname, s.pid, s.calls_recorded, s.calls_lost,
       s.loss_episodes, (SELECT COALESCE(SUM(m.calls), 0) FROM call_minutes AS m WHERE m.session_id = s.id)
FROM sessions AS s WHERE {where} ORDER BY s.id
"""

_LOSSES = """
SELECT id, session_id, started_at, ended_at, reason, calls_lost
FROM losses WHERE {where} ORDER BY id
"""


@dataclass(frozen=True, slots=True)
class Stats:
    methods: list[tuple[Any, ...]]
    sessions: list[tuple[Any, ...]]
    losses: list[tuple[Any, ...]]

    @property
    def calls_lost(self) -> int:
        return sum(int(row[SESSION_COLUMNS.index("calls_lost")] or 0) for row in self.sessions)

    def sections(self) -> list[Section]:
        return [("methods", METHOD_COLUMNS, self.methods), ("sessions", SESSION_COLUMNS, self.sessions),
                ("losses", LOSS_COLUMNS, self.losses)]  # fmt: skip

    def loss_warning(self) -> str | None:
        """One line saying calls were lost, or None when none were."""
        lost = [(row[0], row[SESSION_COLUMNS.index("calls_lost")]) for row in self.sessions]
        lost = [(s, n) for s, n in lost if n]
        if not lost:
            return None
        per = ", ".join(f"session {s}: {n}" for s, n in lost)
        return f"{self.calls_lost} calls were seen but NOT recorded ({per}); see the losses table"


def compute(conn: sqlite3.Connection, *, since_at: str | None = None, session: int | None = None) -> Stats:
    """The three tables for the calls `since_at` (started_at text) and of `session`. Sessions
    are those that were running since then; losses those that had not ended by then.
    StorageError for a `session` the recording does not have."""
    check_session(conn, session)
    call_where, session_where, loss_where = ["1"], ["1"], ["1"]
    call_params: list[Any] = []
    session_params: list[Any] = []
    loss_params: list[Any] = []
    if since_at is not None:
        call_where.append(started_sql(since_at))  # through calls_started_unix (schema 12)
        session_where.append("(s.ended_at IS NULL OR s.ended_at >= ?)")
        session_params.append(since_at)
        loss_where.append("COALESCE(ended_at, started_at) >= ?")
        loss_params.append(since_at)
    if session is not None:
        call_where.append("session_id = ?")
        call_params.append(session)
        session_where.append("s.id = ?")
        session_params.append(session)
        loss_where.append("session_id = ?")
        loss_params.append(session)
    try:
        found = (whole_recording_methods(conn) if since_at is None and session is None
                 else conn.execute(_METHODS.format(where=" AND ".join(call_where)), call_params))  # fmt: skip
        methods = [(short_method(service, method), *rest) for service, method, *rest in found]
        sessions = conn.execute(_SESSIONS.format(where=" AND ".join(session_where)), session_params).fetchall()
        losses = conn.execute(_LOSSES.format(where=" AND ".join(loss_where)), loss_params).fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read statistics: {exc}") from exc
    return Stats(methods, sessions, losses)
