"""What went wrong, on the report's time axis: the `problems` view (gRPC errors, unfinished
calls, non-zero exec exits) counted per bucket by kind and grouped into the top errors, the
failing exec probes grouped by container, and the recorder's losses (calls the
proxy relayed but could not record) from the `losses` table."""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cri_proxy.report.timeaxis import TimeAxis
from cri_proxy.store.selection import REPLAY_SESSIONS, Selection

KINDS = ("grpc_error", "unfinished", "nonzero_exit")
TOP_GROUPS = 50
_EXAMPLES = 3
# Ids and numbers vary between otherwise equal errors: group 'container "3f2a..." not found' as one.
_VARYING = re.compile(r"\b[0-9a-f]{12,}\b|\b\d+\b")


@dataclass(slots=True)
class ErrorGroup:
    """Problems of one method, kind and status (or exit code) with the same message shape."""

    method: str
    kind: str
    status: str
    message: str  # the first one seen, capped
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    examples: list[int] = field(default_factory=list)  # call ids: the first few and the last
    pods: set[str] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)  # of calls that name no pod (ExecSync...)

    def as_dict(self, pod_of: dict[str, str]) -> dict[str, Any]:
        pods = self.pods | {pod_of[c] for c in self.containers if c in pod_of}
        return {"method": self.method, "kind": self.kind, "status": self.status, "message": self.message,
                "count": self.count, "first": self.first, "last": self.last, "examples": self.examples,
                "pods": len(pods)}  # fmt: skip


@dataclass(slots=True)
class Problems:
    per_bucket: dict[str, list[int]]  # kind -> problems per bucket
    groups: list[ErrorGroup]  # most frequent first, at most TOP_GROUPS
    group_count: int  # before the cut
    kinds: dict[int, str]  # call id -> kind, for the pods' waterfalls
    probes: list[dict[str, Any]]  # non-zero exits by container, most first

    def as_dict(self, pod_of: dict[str, str]) -> dict[str, Any]:
        """`pod_of` names each container's pod (from the pods' pass)."""
        return {"per_bucket": self.per_bucket, "groups": [g.as_dict(pod_of) for g in self.groups],
                "group_count": self.group_count, "total": len(self.kinds)}  # fmt: skip


def _pod(namespace: str | None, name: str | None) -> str | None:
    return f"{namespace}/{name}" if name else None


def read_problems(conn: sqlite3.Connection, selection: Selection, axis: TimeAxis) -> Problems:
    where, args = selection.sql_where()
    cursor = conn.execute(
        "SELECT p.call_id, p.kind, c.started_unix, p.method, p.status_name, p.outcome, p.exit_code, "
        "p.status_message, p.pod_namespace, p.pod_name, p.container_id FROM calls AS c JOIN problems AS p ON p.call_id = c.id"
        f"{where} ORDER BY c.started_unix, c.id", args)  # fmt: skip
    per_bucket = {kind: [0] * axis.count for kind in KINDS}
    groups: dict[tuple[str, str, str, str], ErrorGroup] = {}
    kinds: dict[int, str] = {}
    probes: dict[str | None, dict[str, Any]] = {}
    while rows := cursor.fetchmany(2048):
        for call_id, kind, started, method, status, outcome, exit_code, message, ns, name, container in rows:
            kinds[call_id] = kind
            per_bucket.setdefault(kind, [0] * axis.count)[axis.index(started)] += 1
            label = f"exit {exit_code}" if kind == "nonzero_exit" else (status or outcome)
            text = (message or "")[:300]
            key = (method, kind, label, _VARYING.sub("#", text))
            group = groups.get(key)
            if group is None:
                group = groups[key] = ErrorGroup(method, kind, label, text, first=started)
            group.count += 1
            group.last = started
            if len(group.examples) <= _EXAMPLES:
                group.examples.append(call_id)
            else:  # the last slot follows the latest
                group.examples[-1] = call_id
            pod = _pod(ns, name)
            if pod is not None and len(group.pods) < 1000:
                group.pods.add(pod)
            elif pod is None and container is not None and len(group.containers) < 1000:
                group.containers.add(container)
            if kind == "nonzero_exit":
                _probe(probes, call_id, started, container, exit_code, pod)
    ranked = sorted(groups.values(), key=lambda g: (-g.count, g.first))
    by_count = sorted(probes.values(), key=lambda g: -int(g["count"]))
    return Problems(per_bucket, ranked[:TOP_GROUPS], len(ranked), kinds, by_count)


def _probe(probes: dict[str | None, dict[str, Any]], call_id: int, started: float, container: str | None,
           exit_code: int | None, pod: str | None) -> None:  # fmt: skip
    g = probes.get(container)
    if g is None:
        g = probes[container] = {"container_id": container, "pod": pod, "count": 0, "exit_codes": [],
                                 "first": started, "examples": []}  # fmt: skip
    g["count"] += 1
    g["last"] = started
    if exit_code not in g["exit_codes"] and len(g["exit_codes"]) < 20:
        g["exit_codes"].append(exit_code)
    if len(g["examples"]) <= _EXAMPLES:
        g["examples"].append(call_id)
    else:
        g["examples"][-1] = call_id


def readable_bytes(b64: str | None) -> str | None:
    """Base64 text (possibly cut short) as the UTF-8 text it holds, else as given."""
    if not b64:
        return b64
    whole = b64[: len(b64) - len(b64) % 4]
    try:
        return base64.b64decode(whole, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return b64


def failed_probes(conn: sqlite3.Connection, problems: Problems, pod_of: dict[str, str]) -> list[dict[str, Any]]:
    """The failing exec probes grouped by container, most failures first, each with its
    command, its pod and its latest stderr as the `failed_probes` view gives them.

    The groups come from the problems already read; the view is asked only about each
    group's latest failure: it looks up a call's pod in its container's CreateContainer, a
    scan of the container's calls per row, which over every failure of a long recording (a
    probe every 10 s for days) takes a minute, and for one call a few milliseconds."""
    out = []
    for g in problems.probes[:TOP_GROUPS]:
        last = g["examples"][-1]
        row = conn.execute("SELECT cmd, stderr, stderr_base64, pod_namespace, pod_name FROM failed_probes "
                           "WHERE call_id = ?", (last,)).fetchone()  # fmt: skip
        cmd, text, stderr, ns, name = row if row is not None else (None, None, None, None, None)
        out.append({**g, "cmd": _json(cmd) if isinstance(cmd, str) else cmd,
                    "pod": g["pod"] or _pod(ns, name) or pod_of.get(g["container_id"]),
                    # stored as text (newer recordings) or base64 (older ones, and bytes that are not UTF-8)
                    "last_stderr": text if text is not None else readable_bytes(stderr),
                    "last_call": last})  # fmt: skip
    return out


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _unix(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=timezone.utc).timestamp()


def read_losses(conn: sqlite3.Connection, selection: Selection, axis: TimeAxis) -> dict[str, Any]:
    """Loss episodes overlapping the selection, and the calls lost per bucket (by when the
    episode began)."""
    if selection.session is not None:
        rows = conn.execute("SELECT session_id, started_at, ended_at, reason, calls_lost FROM losses "
                            "WHERE session_id = ? ORDER BY started_at", (selection.session,))  # fmt: skip
    else:
        rows = conn.execute("SELECT session_id, started_at, ended_at, reason, calls_lost FROM losses "
                            f"WHERE session_id NOT IN ({REPLAY_SESSIONS}) ORDER BY started_at")  # fmt: skip
    episodes: list[dict[str, Any]] = []
    per_bucket = [0] * axis.count
    for session, started_at, ended_at, reason, lost in rows:
        start, end = _unix(started_at), _unix(ended_at)
        if start is None:
            continue
        if (selection.until is not None and start > selection.until) or (
                selection.since is not None and (end or start) < selection.since):  # fmt: skip
            continue
        per_bucket[axis.index(start)] += int(lost or 0)
        episodes.append({"session": session, "start": start, "end": end, "reason": reason, "lost": lost})
    return {"episodes": episodes[:1000], "episode_count": len(episodes), "per_bucket": per_bucket,
            "lost": sum(int(e["lost"] or 0) for e in episodes)}  # fmt: skip
