"""Per-method numbers of a whole recording from its rollups, with exact percentiles.

`call_minutes` (storage/migrations/0007_call_minutes.sql) gives the counts, failures,
non-zero exec exits, timed calls, longest durations and bytes per service and method in a
few thousand rows. A nearest-rank percentile (the smallest duration whose 1-based rank r
among the timed calls has r * 100 >= p * n) is then the duration r - 1 entries into the
index calls(method, duration_ms): `LIMIT 1 OFFSET r - 1` steps along the index without
reading any call's row, a few milliseconds for a hundred thousand calls. When two services
share a method's name (a client speaking v1 and another v1alpha2) the index alone cannot
tell them apart, and the service is checked on every call's row: slower, still exact.
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

_ONE_SERVICE = ("SELECT duration_ms FROM calls WHERE method = ? AND duration_ms IS NOT NULL "
                "ORDER BY duration_ms {order} LIMIT 1 OFFSET ?")  # fmt: skip
_SHARED = ("SELECT duration_ms FROM calls WHERE method = ? AND service = ? AND duration_ms IS NOT NULL "
           "ORDER BY duration_ms {order} LIMIT 1 OFFSET ?")  # fmt: skip


def nearest_rank(p: int, n: int) -> int:
    """The 1-based rank of the p-th percentile among n values (n > 0)."""
    return (p * n + 99) // 100


def percentile(conn: sqlite3.Connection, service: str, method: str, rank: int, timed: int,
               shared: bool) -> float | None:  # fmt: skip
    """The duration of the given 1-based rank among the method's `timed` calls. A rank in
    the upper half is stepped to from the longest end (p99: 1% of the calls, not 99%)."""
    order, offset = ("DESC", timed - rank) if rank > timed // 2 else ("", rank - 1)
    if shared:
        row = conn.execute(_SHARED.format(order=order), (method, service, offset)).fetchone()
    else:
        row = conn.execute(_ONE_SERVICE.format(order=order), (method, offset)).fetchone()
    return None if row is None else float(row[0])


def whole_recording_methods(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """Rows as stats' METHOD_COLUMNS (with service and method first, not yet shortened):
    service, method, calls, errors, error_rate, nonzero_exits, p50_ms, p95_ms, p99_ms,
    max_ms, request_bytes, response_bytes; busiest first."""
    rows = conn.execute(_PER_METHOD).fetchall()
    services: dict[str, int] = {}
    for row in rows:
        services[row[1]] = services.get(row[1], 0) + 1
    result = []
    for service, method, calls, errors, rate, nonzero, timed, max_ms, req, resp in rows:
        shared = services[method] > 1
        pcts = [percentile(conn, service, method, nearest_rank(p, timed), timed, shared) if timed else None
                for p in _PERCENTILES]  # fmt: skip
        result.append((service, method, calls, errors, rate, nonzero, *pcts, max_ms, req, resp))
    return result
