"""A replay's findings: the terminal summary, and the report file (JSON, or one self-contained
HTML page with each call's differences)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TextIO

from cri_proxy.model.errors import ConfigError
from cri_proxy.query import output
from cri_proxy.replay.compare import short
from cri_proxy.replay.results import VERDICTS, CallResult, ReplayResult, Verdict

METHOD_COLUMNS = ("method", "calls", *(v.value for v in VERDICTS))
_SHOWN_DIFFS = 3  # per call in the terminal; the report file has them all


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


_STYLE = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
.matched{color:#080}.differed{color:#b60}.failed{color:#c00}.skipped{color:#888}
pre{margin:0;white-space:pre-wrap}"""


def html_page(result: ReplayResult) -> str:
    e = html.escape
    s = result.summary()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cri-proxy replay</title>",
        f"<style>{_STYLE}</style></head><body><h1>cri-proxy replay</h1>",
        f"<p>Source: {e(result.source)} (sessions {e(', '.join(map(str, result.source_sessions)))})<br>",
        f"Target: {e(result.target)}<br>Replay {e(recorded_where(result))}</p>",
        f"<p id='summary'>{s['calls']} calls: {s['matched']} matched, {s['differed']} differed, "
        f"{s['failed']} failed, {s['skipped']} skipped; {s['redacted_sent']} sent with redacted secrets.</p>",
        _table(METHOD_COLUMNS, [[str(v) for v in row] for row in result.per_method()]),
        "<h2>Calls</h2>",
        _table(("call", "method", "result", "recorded", "replayed", "why", "differences"),
               [_call_cells(r) for r in result.results], raw_last=True, classes=[r.verdict.value for r in result.results]),
        "</body></html>\n",
    ]  # fmt: skip
    return "".join(parts)


def _call_cells(r: CallResult) -> list[str]:
    diffs = "".join(
        f"<pre>{html.escape(d.path or '(message)')}: recorded {html.escape(short(d.recorded, 400))}"
        f"\n  replayed {html.escape(short(d.replayed, 400))}</pre>" for d in r.differences)  # fmt: skip
    recorded = r.recorded_status or ""
    replayed = (r.replayed_status or "") + (f": {r.replayed_message}" if r.replayed_message else "")
    return [str(r.call_id), r.method, r.verdict.value, recorded, replayed, r.reason, diffs]


def _table(columns: tuple[str, ...], rows: list[list[str]], *, raw_last: bool = False,
           classes: list[str] | None = None) -> str:  # fmt: skip
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = [html.escape(c) for c in row[:-1]] + [row[-1] if raw_last else html.escape(row[-1])]
        cls = f" class='{classes[i]}'" if classes else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"
