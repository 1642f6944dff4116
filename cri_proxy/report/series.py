"""Calls per second and latency over time, per method, and the relist rhythm: one pass over
the selected calls in start order, aggregated into the report's time buckets (the page holds
a few hundred numbers per method, whatever the number of calls).

The relists are the List* calls (ListPodSandbox and ListContainers are the kubelet's PLEG
relist, once a second; ListContainerStats, ListPodSandboxStats and ListImages are its stats
and image polls). Their rhythm is the gap from one call to the next of the same method in
the same session: the kubelet reports PLEG unhealthy (the node NotReady) when relists stop
for 3 minutes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cri_proxy.report.timeaxis import TimeAxis, percentile
from cri_proxy.store.selection import Selection

PLEG_LIMIT_S = 180.0
_LONG_LIVED = ("GetContainerEvents",)  # a stream held open by design: its duration is no latency


def is_relist(method: str) -> bool:
    return method.startswith("List")


@dataclass(slots=True)
class MethodSeries:
    """One method over the axis: calls per bucket and the bucket's p50/p99 duration (ms)."""

    method: str
    calls: int = 0
    counts: list[int] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    total_p50: float | None = None
    total_p99: float | None = None
    max_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "calls": self.calls, "counts": self.counts, "p50": self.p50,
                "p99": self.p99, "total_p50": self.total_p50, "total_p99": self.total_p99,
                "max_ms": self.max_ms}  # fmt: skip


@dataclass(slots=True)
class Relist:
    """One List* method's rhythm: the gaps between its calls (seconds), overall and per bucket."""

    method: str
    calls: int = 0
    gap_p50: float | None = None
    gap_p99: float | None = None
    max_gap: float | None = None
    max_gap_at: float | None = None  # when the longest gap ended (unix)
    slowest_ms: float | None = None
    bucket_max_gap: list[float | None] = field(default_factory=list)
    over_limit: int = 0  # gaps longer than the PLEG limit

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "calls": self.calls, "gap_p50": self.gap_p50, "gap_p99": self.gap_p99,
                "max_gap": self.max_gap, "max_gap_at": self.max_gap_at, "slowest_ms": self.slowest_ms,
                "bucket_max_gap": self.bucket_max_gap, "over_limit": self.over_limit}  # fmt: skip


@dataclass(slots=True)
class _Acc:
    counts: list[int]
    durations: list[list[float]]
    all_durations: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Gaps:
    gaps: list[float] = field(default_factory=list)
    bucket_max: dict[int, float] = field(default_factory=dict)
    last_start: dict[int, float] = field(default_factory=dict)  # per session
    max_gap: float = -1.0
    max_gap_at: float | None = None
    slowest_ms: float | None = None


def read_series(conn: sqlite3.Connection, selection: Selection,
                axis: TimeAxis) -> tuple[list[MethodSeries], list[Relist]]:  # fmt: skip
    """Per method (most calls first), and per List* method, over `axis`."""
    where, args = selection.sql_where()
    cursor = conn.execute(
        f"SELECT c.method, c.started_unix, c.duration_ms, c.session_id FROM calls AS c{where} "
        "ORDER BY c.started_unix, c.id", args)  # fmt: skip
    accs: dict[str, _Acc] = {}
    gaps: dict[str, _Gaps] = {}
    index = axis.index
    while rows := cursor.fetchmany(4096):
        for method, started, duration, session in rows:
            acc = accs.get(method)
            if acc is None:
                acc = accs[method] = _Acc([0] * axis.count, [[] for _ in range(axis.count)])
            b = index(started)
            acc.counts[b] += 1
            if duration is not None and method not in _LONG_LIVED:
                acc.durations[b].append(duration)
            if method[:4] == "List":
                _gap(gaps.setdefault(method, _Gaps()), b, started, duration, session)
    series = [_finish(method, acc) for method, acc in accs.items()]
    series.sort(key=lambda s: (-s.calls, s.method))
    relists = [_finish_gaps(method, g, axis.count) for method, g in sorted(gaps.items())]
    return series, relists


def _gap(g: _Gaps, bucket: int, started: float, duration: float | None, session: int) -> None:
    last = g.last_start.get(session)
    g.last_start[session] = started
    if duration is not None and (g.slowest_ms is None or duration > g.slowest_ms):
        g.slowest_ms = duration
    if last is None:
        return
    gap = started - last
    g.gaps.append(gap)
    if gap > g.bucket_max.get(bucket, -1.0):
        g.bucket_max[bucket] = gap
    if gap > g.max_gap:
        g.max_gap, g.max_gap_at = gap, started


def _finish(method: str, acc: _Acc) -> MethodSeries:
    s = MethodSeries(method, sum(acc.counts), acc.counts)
    everything: list[float] = []
    for values in acc.durations:
        values.sort()
        s.p50.append(_round(percentile(values, 50)))
        s.p99.append(_round(percentile(values, 99)))
        everything.extend(values)
    everything.sort()
    s.total_p50 = _round(percentile(everything, 50))
    s.total_p99 = _round(percentile(everything, 99))
    s.max_ms = _round(everything[-1]) if everything else None
    return s


def _finish_gaps(method: str, g: _Gaps, count: int) -> Relist:
    ordered = sorted(g.gaps)
    r = Relist(method, len(g.gaps) + len(g.last_start), slowest_ms=_round(g.slowest_ms))
    r.gap_p50 = _round(percentile(ordered, 50), 4)
    r.gap_p99 = _round(percentile(ordered, 99), 4)
    r.max_gap = _round(ordered[-1], 4) if ordered else None
    r.max_gap_at = g.max_gap_at if ordered else None
    r.over_limit = sum(1 for x in ordered if x > PLEG_LIMIT_S)
    r.bucket_max_gap = [_round(g.bucket_max.get(i), 4) for i in range(count)]
    return r


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
