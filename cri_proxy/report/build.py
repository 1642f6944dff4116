"""`cri-proxy report`: gathers a recording's aggregates (series, problems, relists, pods, the
slowest calls and the listed calls' details) into the page's data and writes the page.

Every read goes through the one read-only opener and the views; the work is a few passes
over the selected calls, each a single SQL query read in batches, so the time grows with
the number of calls and the page's size does not (it is bounded by the caps in each module).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_proxy.model.errors import StorageError
from cri_proxy.report import pods as pod_pages
from cri_proxy.report.calls import Budget, read_details, read_slowest
from cri_proxy.report.page import html_page, write_page
from cri_proxy.report.problems import failed_probes, read_losses, read_problems
from cri_proxy.report.series import read_series
from cri_proxy.report.timeaxis import axis_for
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import REPLAY_SESSIONS, Selection, check_session

logger = logging.getLogger(__name__)
MAX_METHODS = 60


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    calls: int
    size: int
    seconds: float


def _window(conn: sqlite3.Connection, selection: Selection) -> tuple[int, float | None, float | None]:
    where, args = selection.sql_where()
    count, first, last = conn.execute(
        f"SELECT count(*), min(c.started_unix), max(c.started_unix) FROM calls AS c{where}", args).fetchone()
    return int(count), first, last


def _sessions(conn: sqlite3.Connection, selection: Selection) -> list[list[Any]]:
    columns = "id, started_at, ended_at, cri_proxy_version, hostname, calls_recorded, calls_lost"
    if selection.session is not None:
        rows = conn.execute(f"SELECT {columns} FROM sessions WHERE id = ?", (selection.session,))
    else:
        rows = conn.execute(f"SELECT {columns} FROM sessions WHERE id NOT IN ({REPLAY_SESSIONS}) ORDER BY id")
    return [list(r) for r in rows]


def _detail_ids(data: dict[str, Any], waterfalls: list[pod_pages.Pod]) -> Iterator[int]:
    """The listed calls, most wanted first: the slowest, the errors' and probes' examples,
    then the pods' rows."""
    for row in data["slowest"]:
        yield row[0]
    for group in data["problems"]["groups"]:
        yield from group["examples"]
    for probe in data["probes"]:
        yield from probe["examples"]
    for pod in waterfalls:
        for row in pod.rows:
            yield row[0]
        for poll in pod.polls.values():
            yield poll.slowest


def gather(recording: Recording, selection: Selection, *, source: str, budget: Budget = Budget()) -> dict[str, Any]:
    """The node report's data for the selected calls."""
    conn = recording.conn
    check_session(conn, selection.session)
    count, first, last = _window(conn, selection)
    axis = axis_for(first or 0.0, last or 0.0)
    data: dict[str, Any] = {"kind": "node", "source": source, "axis": axis.as_dict(),
                            "window": {"calls": count, "first": first, "last": last},
                            "sessions": _sessions(conn, selection), "selection": _describe(selection)}  # fmt: skip
    started = time.monotonic()
    series, relists = read_series(conn, selection, axis)
    data["methods"] = [s.as_dict() for s in series[:MAX_METHODS]]
    data["relists"] = [r.as_dict() for r in relists]
    logger.debug("series of %d calls in %.2f s", count, time.monotonic() - started)
    problems = read_problems(conn, selection, axis)
    data["losses"] = read_losses(conn, selection, axis)
    all_pods, pod_count = pod_pages.read_pods(conn, selection, problems.kinds)
    waterfalls = pod_pages.chosen(all_pods)
    index = sorted(all_pods, key=lambda p: (p.problems == 0, -p.first))[:pod_pages.MAX_INDEX]
    data["pods"] = {"count": pod_count, "index": [p.summary() for p in sorted(index, key=lambda p: p.first)],
                    "waterfalls": [p.waterfall() for p in waterfalls]}  # fmt: skip
    pod_of = {container: pod.label() for pod in all_pods for container in pod.containers}
    data["problems"] = problems.as_dict(pod_of)
    data["probes"] = failed_probes(conn, problems, pod_of)
    data["slowest"] = [row[:5] + [row[5] or pod_of.get(row[6])] + row[6:] for row in read_slowest(conn, selection)]
    data["calls"], data["texts"] = read_details(conn, _detail_ids(data, waterfalls), budget)
    logger.debug("report data of %d calls in %.2f s", count, time.monotonic() - started)
    return data


def _describe(selection: Selection) -> str:
    parts = []
    if selection.session is not None:
        parts.append(f"session {selection.session}")
    if selection.since is not None:
        parts.append("since " + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(selection.since)))
    if selection.until is not None:
        parts.append("until " + time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(selection.until)))
    return ", ".join(parts)


def write_report(db: str | os.PathLike[str], out: Path, selection: Selection) -> Written:
    """Reads the recording at `db` (read only) and writes the page to `out`."""
    started = time.monotonic()
    recording = Recording(db)
    try:
        data = gather(recording, selection, source=os.path.basename(os.fspath(db)))
    except sqlite3.Error as exc:
        raise StorageError(f"reading {db} failed: {exc}") from None
    finally:
        recording.close()
    text = html_page("cri-proxy report", data)
    write_page(out, text)
    return Written(out, int(data["window"]["calls"]), len(text.encode("utf-8")), time.monotonic() - started)
