"""The per-minute rollups (`call_minutes`, and `call_durations`), kept by the writer in each
batch's transaction.

`stats`, `health` and the `method_stats` view read per minute, session, service and method
counts, failures, non-zero exec exits, duration sums and maxima and bytes from
`call_minutes` instead of every call. The writer notes the highest call id before a batch
(`last_call_id`) and, after inserting the batch's calls, `add`s their rows: one
INSERT ... SELECT ... ON CONFLICT over just those calls, hot in the page cache, so the
per-batch cost is one grouped statement whatever the batch's size (and one more counting the
batch's durations, for method_stats' exact percentiles). The SELECTs read the tables behind
`calls` (schema 12) and group by the minute as a number, spelt as text once per group: the
migration's own (store.compat.call_minutes_select, which reads `calls`) derives every row's
`started_at` text, at twice the CPU; tests/recorder/test_rollups.py checks the two agree.
Deletions are taken out by the migration's trigger, so retention and snapshot's cut need
nothing from here.
"""

from __future__ import annotations

import functools
import sqlite3


# The batch's calls (`r.id > ?`) with what the rollups count, and the minute: a number (whole
# minutes since the epoch, from the millisecond the view's started_at text rounds to), or the
# row's own text's minute where it keeps one (rows copied from files before schema 12).
_CALLS = (
    "SELECT COALESCE(substr(r.started_at, 1, 16), CAST(round(r.started_unix * 1000) AS INTEGER) / 60000) AS k, "
    "r.session_id, t.service, s.method, s.status_code IS NOT 0 OR s.outcome <> 'completed' AS failed, "
    "s.exit_code IS NOT NULL AND s.exit_code <> 0 AS nonzero, r.duration_us, s.request_bytes, s.response_bytes "
    "FROM call_rows AS r JOIN call_shapes AS s ON s.id = r.shape_id JOIN routes AS t ON t.id = s.route_id "
    "WHERE r.id > ?"
)
_MINUTES_SELECT = (
    "SELECT CASE WHEN typeof(k) = 'text' THEN k ELSE strftime('%Y-%m-%d %H:%M', k * 60, 'unixepoch') END AS minute, "
    "session_id, service, method, COUNT(*), SUM(failed), SUM(nonzero), COUNT(duration_us), "
    "TOTAL(duration_us / 1000.0), MAX(duration_us) / 1000.0, SUM(request_bytes), SUM(response_bytes) "
    f"FROM ({_CALLS}) GROUP BY k, session_id, service, method"
)
_DURATIONS_SELECT = (
    "SELECT service, method, duration_us / 1000.0, COUNT(*) "
    f"FROM ({_CALLS}) WHERE duration_us IS NOT NULL GROUP BY service, method, duration_us"
)
_SUMS = ("calls", "errors", "nonzero_exits", "timed", "duration_ms_sum", "request_bytes", "response_bytes")


@functools.lru_cache(maxsize=1)
def upsert_sql() -> str:
    """Adds the calls with `id > ?` to their minutes' rows (new rows for new minutes)."""
    sums = ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS)
    return (
        "INSERT INTO call_minutes (minute, session_id, service, method, calls, errors, nonzero_exits, timed, "
        "duration_ms_sum, max_ms, request_bytes, response_bytes)\n"
        f"{_MINUTES_SELECT}\n"
        f"ON CONFLICT (minute, session_id, service, method) DO UPDATE SET {sums}, "
        "max_ms = CASE WHEN max_ms IS NULL OR excluded.max_ms > max_ms THEN excluded.max_ms ELSE max_ms END"
    )


@functools.lru_cache(maxsize=1)
def durations_upsert_sql() -> str:
    """Counts the calls with `id > ?` by service, method and duration."""
    return (f"INSERT INTO call_durations (service, method, duration_ms, calls)\n{_DURATIONS_SELECT}\n"
            "ON CONFLICT (service, method, duration_ms) DO UPDATE SET calls = calls + excluded.calls")


def last_call_id(conn: sqlite3.Connection) -> int:
    """The highest call id so far (0 when none): the calls a batch inserts come after it."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM call_rows").fetchone()[0])


def add(conn: sqlite3.Connection, after_id: int) -> None:
    """Rolls the calls inserted after `after_id` up into `call_minutes`; inside the caller's
    transaction, so the rollups commit (or roll back) with the calls."""
    conn.execute(upsert_sql(), (after_id,))
    conn.execute(durations_upsert_sql(), (after_id,))
