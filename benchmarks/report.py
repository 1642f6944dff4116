"""The results table, each route's ratios to direct, and the bars cri-proxy must clear."""

from __future__ import annotations

from dataclasses import dataclass

from measure import Result

SMALL, BIG = "version", "stats_1mb"
P50_BAR, RPS_BAR, RSS_BAR_MB = 1.5, 0.8, 60.0
# The proxy recording every call (--record): issue 16's bars, RPC/s and the peak RSS of proxy
# and recorder together (through the 1 MB replies where they run).
REC_P50_BAR, REC_RPS_BAR, REC_RSS_BAR_MB = 2.0, 0.8, 150.0
TR_P50_BAR, TR_RPS_BAR = 1.5, 0.7  # a v1 client in front of a v1alpha2-only backend (route translated)


@dataclass(frozen=True)
class Bar:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str


def _find(results: list[Result], route: str, workload: str, callers: int) -> Result | None:
    return next((r for r in results if (r.route, r.workload, r.callers) == (route, workload, callers)), None)


def ratios(results: list[Result], r: Result) -> tuple[float | None, float | None]:
    """(p50 ratio, RPC/s ratio) of `r` to direct for the same workload and callers."""
    direct = _find(results, "direct", r.workload, r.callers)
    if direct is None or not direct.rps or not direct.p50_us:
        return None, None
    return r.p50_us / direct.p50_us, r.rps / direct.rps


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    head = ("workload", "callers", "route", "RPC/s", "p50 us", "p99 us", "p50 x", "RPC/s x",
            "CPU %", "CPU s/1k", "RSS MB", "errors", "loadgen %", "other %")
    rows = [head]
    for r in results:
        p50_x, rps_x = ratios(results, r) if r.route != "direct" else (None, None)
        rows.append((r.workload, str(r.callers), r.route, f"{r.rps:.0f}", f"{r.p50_us:.0f}", f"{r.p99_us:.0f}",
                     _fmt(p50_x, ".2f"), _fmt(rps_x, ".2f"), _fmt(r.cpu_pct, ".0f"),
                     _fmt(r.cpu_s_per_1k, ".3f"), _fmt(r.rss_peak_mb, ".1f"), str(r.errors),
                     f"{r.loadgen_cpu_pct:.0f}", f"{r.other_cpu_pct:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def _ratio_bar(results: list[Result], name: str, workload: str, callers: int,
               index: int, limit: float, at_most: bool, route: str = "proxy") -> Bar:
    measured = {name: ratios(results, r)[index] for name in (route, "nginx")
                if (r := _find(results, name, workload, callers)) is not None}
    value = measured.get(route)
    if value is None:
        return Bar(name, None, "not measured in this run")
    detail = f"{route} {value:.2f}x" + (f" (nginx {measured['nginx']:.2f}x)" if measured.get("nginx") else "")
    return Bar(name, value <= limit if at_most else value >= limit, detail)


def bars(results: list[Result], workloads: list[str]) -> list[Bar]:
    found = [_ratio_bar(results, f"small call ({SMALL}) p50 at 1 caller <= {P50_BAR}x direct",
                        SMALL, 1, 0, P50_BAR, True)]
    found += [_ratio_bar(results, f"{w} RPC/s at 32 callers >= {RPS_BAR}x direct", w, 32, 1, RPS_BAR, False)
              for w in workloads]
    found.append(_ratio_bar(results, f"1 MB reply ({BIG}) p50 at 1 caller <= {P50_BAR}x direct",
                            BIG, 1, 0, P50_BAR, True))
    rss = max((r.rss_peak_mb for r in results if r.route == "proxy" and r.rss_peak_mb), default=None)
    found.append(Bar(f"proxy peak RSS < {RSS_BAR_MB:.0f} MB", None if rss is None else rss < RSS_BAR_MB,
                     "not measured in this run" if rss is None else f"{rss:.1f} MB"))
    if any(r.route == "recording" for r in results):
        found.append(_ratio_bar(results, f"recording: small call p50 at 1 caller <= {REC_P50_BAR}x direct",
                                SMALL, 1, 0, REC_P50_BAR, True, "recording"))
        found.append(_ratio_bar(results, f"recording: {SMALL} RPC/s at 32 callers >= {REC_RPS_BAR}x direct",
                                SMALL, 32, 1, REC_RPS_BAR, False, "recording"))
        rec_rss = max((r.rss_peak_mb for r in results if r.route == "recording" and r.rss_peak_mb), default=None)
        found.append(Bar(f"recording: peak RSS of proxy and recorder <= {REC_RSS_BAR_MB:.0f} MB",
                         None if rec_rss is None else rec_rss <= REC_RSS_BAR_MB,
                         "not measured in this run" if rec_rss is None else f"{rec_rss:.1f} MB"))
    if any(r.route == "translated" for r in results):
        found.append(_ratio_bar(results, f"translated: small call p50 at 1 caller <= {TR_P50_BAR}x direct",
                                SMALL, 1, 0, TR_P50_BAR, True, "translated"))
        found.append(_ratio_bar(results, f"translated: {SMALL} RPC/s at 32 callers >= {TR_RPS_BAR}x direct",
                                SMALL, 32, 1, TR_RPS_BAR, False, "translated"))
    return found


def bar_lines(found: list[Bar]) -> str:
    label = {True: "PASS", False: "FAIL", None: "SKIP"}
    return "\n".join(f"{label[b.passed]}  {b.name}: {b.detail}" for b in found)
