"""`cri-proxy tail`: follow calls as the proxy writes them, one line each, like tcpdump.

The recording is polled read-only: every `interval_s` (0.2 s) it reads `MAX(calls.id)` and
then the matching calls between the last id shown and that one, so calls that do not match
the filters are skipped once, not re-read. The proxy writes a batch every 0.1 s, so a call
shows up about 0.1-0.3 s after it ended. Lines are flushed as they are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from cri_proxy.store.readonly import Recording
from cri_proxy.query.output import row_object

TAIL_FORMATS = ("line", "jsonl")
COLUMNS = [
    "id", "session_id", "started_at", "duration_ms", "service", "method", "path", "status_code",
    "status_name", "status_message", "outcome", "request_bytes", "response_bytes",
    "pod_sandbox_id", "pod_name", "pod_namespace", "container_id", "image",
]  # fmt: skip
_SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM calls"
FAILED = "(status_code IS NOT 0 OR outcome <> 'completed')"
ID_CHARS = 12  # as `crictl ps` and `docker ps` shorten ids


@dataclass(frozen=True, slots=True)
class Filters:
    method_glob: str | None = None  # matches `method`, the path, or the short form
    errors_only: bool = False
    since_at: str | None = None  # started_at text

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.method_glob:
            clauses.append("(method GLOB ? OR path GLOB '/' || ? OR path GLOB '/runtime.' || ?)")
            params += [self.method_glob] * 3
        if self.errors_only:
            clauses.append(FAILED)
        if self.since_at:
            clauses.append("started_at >= ?")
            params.append(self.since_at)
        return (" AND ".join(clauses) or "1"), params


def short_method(service: str, method: str) -> str:
    """`v1.RuntimeService/ListContainers` for CRI; other services keep their full name."""
    return f"{service.removeprefix('runtime.')}/{method}"


def status_of(row: dict[str, Any]) -> str:
    """The status name, or how the call ended when it never got one (`cancelled`...)."""
    if row["outcome"] != "completed" or row["status_name"] is None:
        return str(row["outcome"])
    return str(row["status_name"])


def format_line(row: dict[str, Any], id_chars: int | None = ID_CHARS) -> str:
    """`HH:MM:SS.mmm  duration  STATUS  method  ids  req=N resp=N  "error message"` (UTC);
    ids cut to `id_chars` (None: in full)."""
    started = str(row["started_at"])[11:]
    duration = "-" if row["duration_ms"] is None else f"{row['duration_ms']:.1f}ms"
    parts = [started, duration.rjust(9), status_of(row).ljust(17),
             short_method(row["service"], row["method"]).ljust(36)]  # fmt: skip
    name = f"{row['pod_namespace']}/{row['pod_name']}" if row["pod_name"] else None
    if row["pod_sandbox_id"]:
        parts.append(f"pod={row['pod_sandbox_id'][:id_chars]}" + (f"({name})" if name else ""))
    elif name:
        parts.append(f"pod={name}")
    if row["container_id"]:
        parts.append(f"ctr={row['container_id'][:id_chars]}")
    if row["image"]:
        parts.append(f"image={row['image']}")
    parts.append(f"req={row['request_bytes']} resp={row['response_bytes']}")
    failed = row["status_code"] != 0 or row["outcome"] != "completed"
    if failed and row["status_message"]:
        parts.append(json.dumps(row["status_message"], ensure_ascii=False))
    return " ".join(parts).rstrip() + "\n"


def jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row_object(COLUMNS, [row[c] for c in COLUMNS]), ensure_ascii=False) + "\n"


def _read(recording: Recording, query: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The rows, a few hundred at a time (`--since 1d` may be a long backlog)."""
    cursor = recording.conn.execute(query, params)
    while batch := cursor.fetchmany(500):
        for row in batch:
            yield dict(zip(COLUMNS, row))


def _max_id(recording: Recording) -> int:
    return int(recording.conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()[0])


def first_rows(recording: Recording, filters: Filters, last: int | None) -> tuple[int, Iterable[dict[str, Any]]]:
    """The id to follow from, and the calls to show before following: those since
    `filters.since_at` (when given), at most the `last` of them (when given)."""
    top = _max_id(recording)
    if filters.since_at is None and last is None:
        return top, []
    where, params = filters.where()
    if last is None:
        return top, _read(recording, f"{_SELECT} WHERE id <= ? AND {where} ORDER BY id", [top, *params])
    query = f"{_SELECT} WHERE id <= ? AND {where} ORDER BY id DESC LIMIT {int(last)}"
    return top, list(reversed(list(_read(recording, query, [top, *params]))))


def follow(recording: Recording, out: TextIO, fmt: str, filters: Filters, *, last: int | None = None,
           interval_s: float = 0.2, stopped: Callable[[], bool] = lambda: False,
           id_chars: int | None = ID_CHARS) -> None:  # fmt: skip
    """Writes the first rows, then every new matching call until `stopped()` says so (or
    Ctrl-C). Raises StorageError when the file is removed or replaced (Recording.refresh).

    It sleeps with time.sleep and asks `stopped` after each sleep: a signal handler can then
    stop it by setting a plain flag. (threading.Event is no use there: its set() from a
    handler deadlocks when the signal lands while the main thread holds the Event's lock, and
    an exception raised in its wait() can leave that lock released twice.)"""
    def write(row: dict[str, Any]) -> str:
        return format_line(row, id_chars) if fmt == "line" else jsonl_line(row)

    seen, rows = first_rows(recording, filters, last)
    where, params = Filters(filters.method_glob, filters.errors_only).where()
    query = f"{_SELECT} WHERE id > ? AND id <= ? AND {where} ORDER BY id"
    while True:
        for row in rows:
            out.write(write(row))
        out.flush()
        time.sleep(interval_s)
        if stopped():
            return
        recording.refresh()
        top = _max_id(recording)
        if top < seen:  # every call was pruned and ids started again from 1
            seen = 0
        rows = _read(recording, query, [seen, top, *params]) if top > seen else []
        seen = max(seen, top)
