"""A replay's findings: the terminal summary, and the report file (JSON with every call, or one
self-contained HTML page: the differences first, the rest summarised)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TextIO

from cri_proxy.model.errors import ConfigError
from cri_proxy.query import output
from cri_proxy.report import page
from cri_proxy.replay.compare import short
from cri_proxy.replay.results import VERDICTS, CallResult, ReplayResult, Verdict

METHOD_COLUMNS = ("method", "calls", *(v.value for v in VERDICTS))
_SHOWN_DIFFS = 3  # per call in the terminal; the report file has them all
# The HTML page lists this many differing calls in full (the JSON report has every one) and
# groups the rest by field, so a replay of a million calls still gives a page of a few MB.
_LISTED = 2000
_DIFFS_LISTED = 20
_FIELDS_LISTED = 500
_POSITIONS = re.compile(r"\[(\d+|id=[^\]]*)\]")


def check_report_path(path: Path) -> str:
    """"json" or "html" from the file name; ConfigError for anything else."""
    kind = path.suffix.lower().lstrip(".")
    if kind == "htm":
        kind = "html"
    if kind not in ("json", "html"):
        raise ConfigError(f"--report {path}: name the file .json or .html")
    return kind


def write_terminal(out: TextIO, result: ReplayResult) -> None:
    for r in result.results:
        if r.verdict in (Verdict.DIFFERED, Verdict.FAILED):
            out.write(f"call {r.call_id} {r.method}: {r.verdict.value}: {r.reason}\n")
            for d in r.differences[:_SHOWN_DIFFS]:
                out.write(f"    {d.path or '(message)'}: recorded {short(d.recorded)}, replayed {short(d.replayed)}\n")
    redacted = result.summary()["redacted_sent"]
    if redacted:
        out.write(f"{redacted} calls were sent as recorded, with their secrets redacted ('[redacted]' values)\n")
    output.write_table(out, METHOD_COLUMNS, result.per_method())
    s = result.summary()
    out.write(f"replayed {s['calls'] - s['skipped']} of {s['calls']} calls in {result.elapsed_s:.2f} s: "
              f"{s['matched']} matched, {s['differed']} differed, {s['failed']} failed, {s['skipped']} skipped; "
              f"{recorded_where(result)}\n")  # fmt: skip


def recorded_where(result: ReplayResult) -> str:
    if result.db_out is None:
        return "not recorded (give --db-out to record the replay)"
    return f"recorded as session {result.replay_session} in {result.db_out}"


def write_report(path: Path, result: ReplayResult) -> None:
    kind = check_report_path(path)
    text = json.dumps(result.as_dict(), indent=1, ensure_ascii=False) + "\n" if kind == "json" else html_page(result)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --report {path}: {exc.strerror}") from None


def html_page(result: ReplayResult) -> str:
    """The replay as one self-contained page (the node report's shell and script): the calls
    that differed or failed first, sortable and filterable, then the fields that differ, the
    verdicts per method, and the matched and skipped calls summarised per method."""
    return page.html_page("cri-proxy replay", page_data(result))


def page_data(result: ReplayResult) -> dict[str, Any]:
    differing = [r for r in result.results if r.verdict in (Verdict.DIFFERED, Verdict.FAILED)]
    return {
        "kind": "replay", "source": result.source, "sessions": result.source_sessions, "target": result.target,
        "recorded_where": recorded_where(result), "elapsed_s": round(result.elapsed_s, 3),
        "summary": result.summary(), "methods": [list(row) for row in result.per_method()],
        "differing": [_differing(r) for r in differing[:_LISTED]], "differing_count": len(differing),
        "fields": _fields(differing), "matched": _matched(result.results), "skipped": _skipped(result.results),
    }  # fmt: skip


def _differing(r: CallResult) -> list[Any]:
    replayed = (r.replayed_status or "") + (f": {short(r.replayed_message, 300)}" if r.replayed_message else "")
    diffs = [[d.path, short(d.recorded, 300), short(d.replayed, 300)] for d in r.differences[:_DIFFS_LISTED]]
    return [r.call_id, r.method, r.verdict.value, r.reason, r.recorded_status or "", replayed, diffs]


def _fields(differing: list[CallResult]) -> list[list[Any]]:
    """(method, field with list positions as [*], calls, first example ids), most calls first."""
    found: dict[tuple[str, str], list[Any]] = {}
    for r in differing:
        for path in {_POSITIONS.sub("[*]", d.path) or "(message)" for d in r.differences}:
            entry = found.setdefault((r.method, path), [r.method, path, 0, []])
            entry[2] += 1
            if len(entry[3]) < 5:
                entry[3].append(r.call_id)
    return sorted(found.values(), key=lambda e: (-e[2], e[0], e[1]))[:_FIELDS_LISTED]


def _matched(results: list[CallResult]) -> list[list[Any]]:
    """(method, calls, p50 ms, max ms) of the matched calls, by method."""
    durations: dict[str, list[float]] = {}
    for r in results:
        if r.verdict is Verdict.MATCHED:
            durations.setdefault(r.method, []).append(r.duration_ms if r.duration_ms is not None else -1.0)
    rows = []
    for method, values in sorted(durations.items()):
        timed = sorted(v for v in values if v >= 0)
        p50 = timed[max(0, -(-len(timed) // 2) - 1)] if timed else None
        rows.append([method, len(values), p50, timed[-1] if timed else None])
    return rows


def _skipped(results: list[CallResult]) -> list[list[Any]]:
    """(method, why, calls, first call id) of the skipped calls."""
    found: dict[tuple[str, str], list[Any]] = {}
    for r in results:
        if r.verdict is Verdict.SKIPPED:
            found.setdefault((r.method, r.reason), [r.method, r.reason, 0, r.call_id])[2] += 1
    return sorted(found.values(), key=lambda e: (-e[2], e[0]))
