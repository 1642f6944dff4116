"""The per-minute rollups (`call_minutes`, and `call_durations`), kept by the writer in each
batch's transaction.

The writer counts each call into a `Rollup` as it makes the call's row (a few dict
operations, in Python) and stores the batch's groups with one upsert of VALUES: grouping the
batch's rows again in SQL (`add`, below) cost about 16,600 instructions a small call, a tenth
of the recorder's. `add` remains for files filled otherwise (benchmarks/big_recording.py), and
the two must agree with the migration's own SELECT (tests/recorder/test_rollups.py).

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
import time
from typing import TYPE_CHECKING, Any

from cri_proxy.model.call import Outcome
from cri_proxy.model.cri import parse_path

if TYPE_CHECKING:
    from cri_proxy.model.call import RecordedCall


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


_COMPLETED = Outcome.COMPLETED
_GroupKey = tuple[int, int, str]  # minute (whole minutes since the epoch), session, path


def minute_of(started_unix: float) -> int:
    """The call's minute as `_CALLS` computes it: SQLite's round() of the millisecond (half
    away from zero), then integer division, which truncates toward zero."""
    ms = started_unix * 1000
    whole = int(ms + 0.5) if ms >= 0 else -int(-ms + 0.5)
    return whole // 60000 if whole >= 0 else -(-whole // 60000)


@functools.lru_cache(maxsize=64)
def minute_text(minute: int) -> str:
    """strftime('%Y-%m-%d %H:%M', minute * 60, 'unixepoch'): a batch's calls share one or two."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(minute * 60))


class Rollup:
    """One batch's `call_minutes` and `call_durations` counts, kept as its rows are made.

    Calls are counted by path (the service and method a path names are read once per group,
    in `store`: `call.service` parses the path, some 200 ns a time), and the minute is taken
    from the last one's bounds while the calls stay in it: SQLite's minute of a positive time
    is int(ms + 0.5) // 60000, so the same float `ms + 0.5` in [60000 m, 60000 (m + 1)) is
    minute m exactly."""

    __slots__ = ("_minutes", "_durations", "_minute", "_low", "_high")

    def __init__(self) -> None:
        # calls, errors, non-zero exits, timed, duration ms sum, max duration us, request, response bytes
        self._minutes: dict[_GroupKey, list[Any]] = {}
        self._durations: dict[tuple[str, int], int] = {}
        self._minute, self._low, self._high = 0, 1.0, 0.0  # no time is in [1, 0)

    def count(self, session_id: int, call: RecordedCall, duration_us: int | None, exit_code: int | None) -> None:
        started = call.started_at
        halfway = started * 1000 + 0.5
        if self._low <= halfway < self._high:
            minute = self._minute
        else:
            minute = minute_of(started)
            if started >= 0:
                self._minute, self._low, self._high = minute, minute * 60000.0, (minute + 1) * 60000.0
        path = call.path
        key = (minute, session_id, path)
        group = self._minutes.get(key)
        if group is None:
            group = self._minutes[key] = [0, 0, 0, 0, 0.0, None, 0, 0]
        code = call.status_code
        group[0] += 1
        group[1] += code is None or code != 0 or call.outcome is not _COMPLETED
        group[2] += exit_code is not None and exit_code != 0
        if duration_us is not None:
            group[3] += 1
            group[4] += duration_us / 1000.0
            longest = group[5]
            if longest is None or duration_us > longest:
                group[5] = duration_us
            durations = self._durations
            durations[path, duration_us] = durations.get((path, duration_us), 0) + 1
        group[6] += call.request_bytes
        group[7] += call.response_bytes

    def store(self, conn: sqlite3.Connection) -> None:
        """Adds the batch's counts to the file's rows; inside the caller's transaction."""
        minutes: dict[tuple[int, int, str, str], list[Any]] = {}
        for (minute, session_id, path), group in self._minutes.items():
            parsed = parse_path(path)
            key = (minute, session_id, parsed.service, parsed.method)
            merged = minutes.setdefault(key, [0, 0, 0, 0, 0.0, None, 0, 0])
            for i in (0, 1, 2, 3, 4, 6, 7):
                merged[i] += group[i]
            if group[5] is not None and (merged[5] is None or group[5] > merged[5]):
                merged[5] = group[5]
        if minutes:
            conn.executemany(values_upsert_sql(), [
                (minute_text(minute), session_id, service, method, *counts[:5],
                 None if counts[5] is None else counts[5] / 1000.0, counts[6], counts[7])
                for (minute, session_id, service, method), counts in minutes.items()])
        durations: dict[tuple[str, str, int], int] = {}
        for (path, duration_us), calls in self._durations.items():
            parsed = parse_path(path)
            named = (parsed.service, parsed.method, duration_us)
            durations[named] = durations.get(named, 0) + calls
        if durations:
            conn.executemany(
                "INSERT INTO call_durations (service, method, duration_ms, calls) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (service, method, duration_ms) DO UPDATE SET calls = calls + excluded.calls",
                [(service, method, duration_us / 1000.0, calls)
                 for (service, method, duration_us), calls in durations.items()])


@functools.lru_cache(maxsize=1)
def values_upsert_sql() -> str:
    """upsert_sql's, with one group's values in place of the SELECT."""
    return upsert_sql().replace(f"{_MINUTES_SELECT}\n", "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)\n")
