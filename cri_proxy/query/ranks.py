"""Per-method numbers of a whole recording from its rollups, with exact percentiles.

`call_minutes` (storage/migrations/0007_call_minutes.sql) gives the counts, failures,
non-zero exec exits, timed calls, longest durations and bytes per service and method in a
few thousand rows. A nearest-rank percentile (the smallest duration whose 1-based rank r
among the timed calls has r * 100 >= p * n) is then read from `call_durations` (0007 too:
each service and method's calls counted by duration): the first duration whose running
count reaches r, along its primary key, a few thousand distinct durations at most. (Up to
schema 11 it stepped `LIMIT 1 OFFSET r - 1` along the index calls(method, duration_ms),
which schema 12 no longer has: the method is the call's shape's.)
"""

from __future__ import annotations

import sqlite3
from typing import Any

_PERCENTILES = (50, 95, 99)

_PER_METHOD = """
SELECT service, method, SUM(calls), SUM(errors), ROUND(1.0 * SUM(errors) / SUM(calls), 4), SUM(nonzero_exits),
       SUM(timed), MAX(max_ms), SUM(request_bytes), SUM(response_bytes)
FROM call_minutes
GROUP BY service, method
ORDER BY SUM(calls) DESC, service, method
"""

# The first duration, in order, whose running count of calls reaches the rank; from the
# longest end for a rank in the upper half (p99: 1% of the calls stepped over, not 99%).
_RANK = ("SELECT duration_ms FROM (SELECT duration_ms, SUM(calls) OVER (ORDER BY duration_ms {order} "
         "ROWS UNBOUNDED PRECEDING) AS upto FROM call_durations WHERE service = ? AND method = ?) "
         "WHERE upto >= ? ORDER BY duration_ms {order} LIMIT 1")


def nearest_rank(p: int, n: int) -> int:
    """The 1-based rank of the p-th percentile among n values (n > 0)."""
    return (p * n + 99) // 100


def percentile(conn: sqlite3.Connection, service: str, method: str, rank: int, timed: int) -> float | None:
    """The duration of the given 1-based rank among the service's method's `timed` calls."""
    order, rank = ("DESC", timed - rank + 1) if rank > timed // 2 else ("", rank)
    row = conn.execute(_RANK.format(order=order), (service, method, rank)).fetchone()
    return None if row is None else float(row[0])


def whole_recording_methods(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Rows as stats' METHOD_COLUMNS (with service and method first, not yet shortened):
    service, method, calls, errors, error_rate, nonzero_exits, p50_ms, p95_ms, p99_ms,
    max_ms, request_bytes, response_bytes; busiest first."""
    rows = conn.execute(_PER_METHOD).fetchall()
    result = []
    for service, method, calls, errors, rate, nonzero, timed, max_ms, req, resp in rows:
        pcts = [percentile(conn, service, method, nearest_rank(p, timed), timed) if timed else None
                for p in _PERCENTILES]  # fmt: skip
        result.append((service, method, calls, errors, rate, nonzero, *pcts, max_ms, req, resp))
    return result
