"""The per-minute rollups (`call_minutes`, and `call_durations`), kept by the writer in each
batch's transaction.

`stats`, `health` and the `method_stats` view read per minute, session, service and method
counts, failures, non-zero exec exits, duration sums and maxima and bytes from
`call_minutes` instead of every call. The writer notes the highest call id before a batch
(`last_call_id`) and, after inserting the batch's calls, `add`s their rows: one
INSERT ... SELECT ... ON CONFLICT over just those calls, hot in the page cache, so the
per-batch cost is one grouped statement whatever the batch's size (and one more counting the
batch's durations, for method_stats' exact percentiles). The SELECT is the
migration's own (store.compat.call_minutes_select); deletions are taken out by the
migration's trigger, so retention and snapshot's cut need nothing from here.
"""

from __future__ import annotations

import functools
import sqlite3

from cri_proxy.store.compat import call_durations_select, call_minutes_select

_SUMS = ("calls", "errors", "nonzero_exits", "timed", "duration_ms_sum", "request_bytes", "response_bytes")


@functools.lru_cache(maxsize=1)
def upsert_sql() -> str:
    """Adds the calls with `id > ?` to their minutes' rows (new rows for new minutes)."""
    sums = ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMS)
    return (
        "INSERT INTO call_minutes (minute, session_id, service, method, calls, errors, nonzero_exits, timed, "
        "duration_ms_sum, max_ms, request_bytes, response_bytes)\n"
        f"{call_minutes_select('id > ?')}\n"
        f"ON CONFLICT (minute, session_id, service, method) DO UPDATE SET {sums}, "
        "max_ms = CASE WHEN max_ms IS NULL OR excluded.max_ms > max_ms THEN excluded.max_ms ELSE max_ms END"
    )


@functools.lru_cache(maxsize=1)
def durations_upsert_sql() -> str:
    """Counts the calls with `id > ?` by service, method and duration."""
    return (f"INSERT INTO call_durations (service, method, duration_ms, calls)\n{call_durations_select('id > ?')}\n"
            "ON CONFLICT (service, method, duration_ms) DO UPDATE SET calls = calls + excluded.calls")


def last_call_id(conn: sqlite3.Connection) -> int:
    """The highest call id so far (0 when none): the calls a batch inserts come after it."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM call_rows").fetchone()[0])


def add(conn: sqlite3.Connection, after_id: int) -> None:
    """Rolls the calls inserted after `after_id` up into `call_minutes`; inside the caller's
    transaction, so the rollups commit (or roll back) with the calls."""
    conn.execute(upsert_sql(), (after_id,))
    conn.execute(durations_upsert_sql(), (after_id,))
