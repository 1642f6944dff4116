"""Drawing a pod's story (query/pod.py) in the terminal as a waterfall, with rich.

One row per lifecycle step: when it started (from the pod's first step), the gap since the
previous step ended, its duration, how it ended, and a bar placed on the pod's time axis,
so the long steps and the long waits stand out. The summarised polls and probes follow,
each with a dotted bar from its first to its last call. Failed steps and failing probes
are red. Durations and gaps are printed in the unit that keeps them short.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cri_proxy.query.pod import PodStory, Step, Summary

BAR_WIDTH = 40


def human_ms(ms: float | None) -> str:
    """1.2ms, 340ms, 2.51s, 3m04s, 2h05m."""
    if ms is None:
        return ""
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 10:
        return f"{sign}{ms:.1f}ms"
    if ms < 1000:
        return f"{sign}{ms:.0f}ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.2f}s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{sign}{minutes}m{seconds:02d}s"
    return f"{sign}{minutes // 60}h{minutes % 60:02d}m"


def bar(start_ms: float, end_ms: float, span_ms: float, char: str, style: str) -> Text:
    """`char` from start to end on a BAR_WIDTH-wide axis of `span_ms` (at least one cell)."""
    span = max(span_ms, 1e-9)
    left = min(BAR_WIDTH - 1, max(0, int(start_ms / span * BAR_WIDTH)))
    right = min(BAR_WIDTH, max(left + 1, round(end_ms / span * BAR_WIDTH)))
    return Text(" " * left) + Text(char * (right - left), style=style)


def _step_label(step: Step) -> str:
    label = step.method
    if step.container:
        label += f" {step.container}"
    if step.attempt:
        label += f" (attempt {step.attempt})"
    return label


def _summary_label(summary: Summary) -> str:
    label = f"{summary.method} ×{summary.calls}"
    return label + (f" {summary.container}" if summary.container else "")


def _summary_status(summary: Summary) -> str:
    if summary.exit_codes:
        return " ".join(f"exit={code}×{n}" for code, n in sorted(summary.exit_codes.items()))
    return f"{summary.failures} failed" if summary.failures else "OK"


def render(out: TextIO, result: PodStory, width: int | None = None) -> None:
    console = Console(file=out, width=width or 120, highlight=False, soft_wrap=False)
    who = f"{result.namespace}/{result.name}" if result.name else ", ".join(result.sandbox_ids) or "?"
    console.print(f"pod {who}: {len(result.steps)} steps in {human_ms(result.wall_ms)} "
                  f"from {result.started_at or '-'} (UTC)")  # fmt: skip
    span = max([result.wall_ms] + [s.last_end_offset_ms for s in result.summaries])
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name, justify in (("at", "right"), ("call", "left"), ("gap", "right"), ("took", "right"),
                          ("status", "left"), ("", "left")):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for step in result.steps:
        failed = step.failed or (step.exit_code not in (None, 0))
        style = "red" if failed else ("yellow" if step.gap_ms > step.duration_ms and step.gap_ms > 1000 else "green")
        table.add_row(f"+{human_ms(step.offset_ms)}", _step_label(step), human_ms(step.gap_ms),
                      human_ms(step.duration_ms), Text(step.status, style="red" if failed else ""),
                      bar(step.offset_ms, step.offset_ms + step.duration_ms, span, "█", style))  # fmt: skip
    for summary in result.summaries:
        style = "red" if summary.failures else "cyan"
        table.add_row(f"+{human_ms(summary.first_offset_ms)}", _summary_label(summary), "",
                      f"≤{human_ms(summary.max_ms)}", Text(_summary_status(summary), style="red" if summary.failures else ""),
                      bar(summary.first_offset_ms, summary.last_end_offset_ms, span, "·", style))  # fmt: skip
    console.print(table)
