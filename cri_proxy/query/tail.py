"""`cri-proxy tail`: follow calls as the proxy writes them, one line each, like tcpdump.

The recording is polled read-only: every `interval_s` (0.2 s) it reads `MAX(calls.id)` and
then the matching calls between the last id shown and that one, so calls that do not match
the filters are skipped once, not re-read. The proxy writes a batch every 0.1 s, so a call
shows up about 0.1-0.3 s after it ended. Lines are flushed as they are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from cri_proxy.model.clock import started_sql
from cri_proxy.model.status import FAILED_SQL
from cri_proxy.query.output import row_object
from cri_proxy.store import reader
from cri_proxy.store.readonly import Recording
from cri_proxy.store.rows import StoredCall

TAIL_FORMATS = ("line", "jsonl")
COLUMNS = [
    "id", "session_id", "started_at", "duration_ms", "service", "method", "path", "status_code",
    "status_name", "status_message", "outcome", "request_bytes", "response_bytes",
    "pod_sandbox_id", "pod_name", "pod_namespace", "container_id", "image", "exit_code",
    "client", "client_pid", "client_uid", "client_exe",
]  # fmt: skip
FAILED = FAILED_SQL
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
            clauses.append(started_sql(self.since_at))  # through calls_started_unix (schema 12)
        return (" AND ".join(clauses) or "1"), params


def short_method(service: str, method: str) -> str:
    """`v1.RuntimeService/ListContainers` for CRI; other services keep their full name."""
    return f"{service.removeprefix('runtime.')}/{method}"


def status_of(call: StoredCall) -> str:
    """The status name, or how the call ended when it never got one (`cancelled`...); an
    ExecSync whose command exited non-zero adds it (`OK exit=3`): a failing probe."""
    if call.outcome != "completed" or call.status_name is None:
        return call.outcome
    if call.exited_nonzero:
        return f"{call.status_name} exit={call.exit_code}"
    return call.status_name


def client_of(stored: StoredCall) -> str | None:
    """Who made the call: `crictl:4242` (process name and pid), `pid:4242` when only the pid
    is known (older recordings), None when nothing is (a call the bridge served)."""
    call = stored.call
    if call.peer_pid is None:
        return call.peer_name
    return f"{call.peer_name or 'pid'}:{call.peer_pid}"


def format_line(stored: StoredCall, id_chars: int | None = ID_CHARS) -> str:
    """`HH:MM:SS.mmm  duration  STATUS  method  ids  by=client  req=N resp=N  "error message"`
    (UTC); ids cut to `id_chars` (None: in full)."""
    call, ids = stored.call, stored.ids
    started = stored.started_at[11:]
    duration = "-" if stored.duration_ms is None else f"{stored.duration_ms:.1f}ms"
    parts = [started, duration.rjust(9), status_of(stored).ljust(17),
             short_method(stored.service, stored.method).ljust(36)]  # fmt: skip
    name = f"{ids.get('pod_namespace')}/{ids.get('pod_name')}" if ids.get("pod_name") else None
    pod_id, container_id, image = ids.get("pod_sandbox_id"), ids.get("container_id"), ids.get("image")
    if pod_id:
        parts.append(f"pod={pod_id[:id_chars]}" + (f"({name})" if name else ""))
    elif name:
        parts.append(f"pod={name}")
    if container_id:
        parts.append(f"ctr={container_id[:id_chars]}")
    if image:
        parts.append(f"image={image}")
    if (client := client_of(stored)) is not None:
        parts.append(f"by={client}")
    parts.append(f"req={call.request_bytes} resp={call.response_bytes}")
    if stored.failed and call.status_message:
        parts.append(json.dumps(call.status_message, ensure_ascii=False))
    return " ".join(parts).rstrip() + "\n"


def row_values(stored: StoredCall) -> list[Any]:
    """The call as the COLUMNS of `--format jsonl`."""
    call = stored.call
    fields: dict[str, Any] = {
        "id": stored.id, "session_id": stored.session_id, "started_at": stored.started_at,
        "duration_ms": stored.duration_ms, "service": stored.service, "method": stored.method,
        "path": call.path, "status_code": call.status_code, "status_name": stored.status_name,
        "status_message": call.status_message, "outcome": stored.outcome,
        "request_bytes": call.request_bytes, "response_bytes": call.response_bytes, **stored.ids,
        "exit_code": stored.exit_code, "client": call.peer_name, "client_pid": call.peer_pid,
        "client_uid": call.peer_uid, "client_exe": call.peer_exe,
    }  # fmt: skip
    return [fields.get(c) for c in COLUMNS]


def jsonl_line(stored: StoredCall) -> str:
    return json.dumps(row_object(COLUMNS, row_values(stored)), ensure_ascii=False) + "\n"


def first_rows(recording: Recording, filters: Filters, last: int | None) -> tuple[int, Iterable[StoredCall]]:
    """The id to follow from, and the calls to show before following: those since
    `filters.since_at` (when given), at most the `last` of them (when given)."""
    top = reader.max_call_id(recording.conn)
    if filters.since_at is None and last is None:
        return top, []
    where, params = filters.where()
    if last is None:
        return top, reader.read_calls(recording.conn, f"id <= ? AND {where}", [top, *params])
    newest = reader.read_calls(recording.conn, f"id <= ? AND {where}", [top, *params], order="c.id DESC", limit=last)
    return top, list(reversed(list(newest)))


def follow(recording: Recording, out: TextIO, fmt: str, filters: Filters, *, last: int | None = None,
           interval_s: float = 0.2, stopped: Callable[[], bool] = lambda: False,
           id_chars: int | None = ID_CHARS) -> None:  # fmt: skip
    """Writes the first rows, then every new matching call until `stopped()` says so (or
    Ctrl-C). Raises StorageError when the file is removed or replaced (Recording.refresh).

    It sleeps with time.sleep and asks `stopped` after each sleep: a signal handler can then
    stop it by setting a plain flag. (threading.Event is no use there: its set() from a
    handler deadlocks when the signal lands while the main thread holds the Event's lock, and
    an exception raised in its wait() can leave that lock released twice.)"""
    def write(stored: StoredCall) -> str:
        return format_line(stored, id_chars) if fmt == "line" else jsonl_line(stored)

    seen, rows = first_rows(recording, filters, last)
    where, params = Filters(filters.method_glob, filters.errors_only).where()
    while True:
        for row in rows:
            out.write(write(row))
        out.flush()
        time.sleep(interval_s)
        if stopped():
            return
        recording.refresh()
        top = reader.max_call_id(recording.conn)
        if top < seen:  # every call was pruned and ids started again from 1
            seen = 0
        rows = reader.read_calls(recording.conn, f"id > ? AND id <= ? AND {where}", [seen, top, *params]) if top > seen else []
        seen = max(seen, top)
