"""The calls the page lists one by one (the slowest, examples of each top error and failing
probe, the pods' waterfall rows) and, for as many as fit its budget, each call's request and
response as stored (decoded JSON, redacted as recorded), shown on demand.

A message's text is capped, a call shows its first few messages of each direction, and
bodies are kept once however many calls share them (the store keeps them by hash too), so
a month of status polls costs one copy of each distinct answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cri_proxy.store.reader import read_calls
from cri_proxy.store.rows import StoredCall
from cri_proxy.store.selection import Selection

SLOWEST = 50
MESSAGES_SHOWN = 3  # per direction
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Budget:
    """How much of the recording the page embeds."""

    calls: int = 6000
    text_chars: int = 4_000_000
    message_chars: int = 6000


def read_slowest(conn: sqlite3.Connection, selection: Selection, limit: int = SLOWEST) -> list[list[Any]]:
    """[id, started, ms, method, status, pod, container id] of the slowest calls (streams
    held open by design left out, as `slow_calls` does)."""
    where, args = selection.sql_where()
    where += (" AND " if where else " WHERE ") + "c.duration_ms IS NOT NULL AND c.method <> 'GetContainerEvents'"
    rows = conn.execute(
        "SELECT c.id, c.started_unix, c.duration_ms, c.method, COALESCE(c.status_name, c.outcome), "
        f"c.pod_namespace, c.pod_name, c.container_id FROM calls AS c{where} "
        f"ORDER BY c.duration_ms DESC LIMIT {int(limit)}", args)  # fmt: skip
    return [[i, t, ms, m, st, f"{ns}/{name}" if name else None, ct] for i, t, ms, m, st, ns, name, ct in rows]


def _entry(sc: StoredCall) -> dict[str, Any]:
    call = sc.call
    pod = f"{sc.ids.get('pod_namespace')}/{sc.ids['pod_name']}" if sc.ids.get("pod_name") else None
    entry: dict[str, Any] = {
        "m": sc.method, "path": sc.path, "s": sc.session_id, "t": sc.started_unix, "ms": sc.duration_ms,
        "st": sc.status_name or sc.outcome, "out": sc.outcome, "msg": (sc.status_message or "")[:1000],
        "ex": sc.exit_code, "pod": pod, "sb": sc.ids.get("pod_sandbox_id"), "ct": sc.ids.get("container_id"),
        "img": sc.ids.get("image"), "api": call.client_api, "up": call.upstream_api,
        "md": [list(p) for p in call.request_metadata[:30]], "tr": [list(p) for p in call.trailers[:30]],
        "notes": call.notes[:20], "redacted": sc.redacted, "req": [], "resp": [],
    }  # fmt: skip
    return entry


def read_details(conn: sqlite3.Connection, ids: Iterable[int], budget: Budget) -> tuple[dict[int, Any], dict[int, str]]:
    """{call id: entry} and {payload id: text} for the first calls of `ids` that fit."""
    wanted: list[int] = []
    seen: set[int] = set()
    for call_id in ids:
        if call_id not in seen:
            seen.add(call_id)
            wanted.append(call_id)
            if len(wanted) >= budget.calls:
                break
    calls: dict[int, Any] = {}
    texts: dict[int, str] = {}
    used = 0
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i:i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for sc in read_calls(conn, f"c.id IN ({marks})", chunk):
            calls[sc.id] = _entry(sc)
        rows = conn.execute(
            "SELECT call_id, direction, idx, payload_id, size, truncated, compressed, json FROM call_messages "
            f"WHERE call_id IN ({marks}) AND idx <= {MESSAGES_SHOWN} ORDER BY call_id, direction, idx", chunk)  # fmt: skip
        for call_id, direction, idx, payload_id, size, truncated, compressed, text in rows:
            entry = calls.get(call_id)
            if entry is None:
                continue
            side = entry["req" if direction == "request" else "resp"]
            if idx >= MESSAGES_SHOWN:
                entry["more_" + direction] = True
                continue
            if payload_id not in texts:
                body = _text(text, size, truncated, compressed, budget.message_chars)
                if used + len(body) > budget.text_chars:
                    side.append(None)  # over the page's budget: the page says how to see it
                    continue
                texts[payload_id] = body
                used += len(body)
            side.append(payload_id)
    return calls, texts


def _text(text: str | None, size: int, truncated: int, compressed: int, cap: int) -> str:
    if text is None:
        why = ("compressed" if compressed else "over the recording's payload cap" if truncated
               else "not decoded")  # fmt: skip
        return f"({size} bytes, {why}: no JSON stored)"
    if len(text) > cap:
        return text[:cap] + f"\n... ({len(text) - cap} more characters: see cri-proxy query, call_messages)"
    return text
