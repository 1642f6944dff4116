"""`cri-proxy pod`: every call about one pod, in order, as the story of where its time went.

A pod is named as NAMESPACE/NAME, or by a pod sandbox id or container id (a unique prefix
will do, as crictl accepts). Its calls are found through the ids the recording stores
(`calls.pod_sandbox_id`, `container_id`, `pod_name`, `pod_namespace`, all indexed): the
calls naming its sandboxes, the calls naming only one of its containers (ExecSync,
ContainerStatus), a RunPodSandbox that failed (no id, only the name), and the image pulls
made for it (PullImage's decoded `sandbox_config`).

The lifecycle calls are the story's steps, each with its duration and the gap since the
previous step ended, so gaps and durations add up to the pod's wall time (first step's start
to last step's end). The calls the kubelet repeats (status polls, exec probes) are
summarised per method and container instead: count, failures, first and last, exit codes.
Restarts show as CreateContainer's attempt number (`config.metadata.attempt`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from cri_proxy.model.errors import ConfigError

# Repeated by the kubelet while the pod lives: summarised, not listed.
POLLS = frozenset({"PodSandboxStatus", "ContainerStatus", "ContainerStats", "PodSandboxStats", "ListContainers",
                   "ListPodSandbox", "ListContainerStats", "ListPodSandboxStats", "ExecSync"})  # fmt: skip
_TOP = "\U0010ffff"  # above every id character: `id >= p AND id < p || _TOP` is a prefix range on the index
_COLUMNS = "c.id, c.started_at, c.started_unix, c.duration_ms, c.method, c.pod_sandbox_id, c.container_id, " \
           "COALESCE(c.status_name, c.outcome), c.status_code IS NOT 0 OR c.outcome <> 'completed', c.exit_code"  # fmt: skip


@dataclass(frozen=True, slots=True)
class Step:
    """One lifecycle call. `offset_ms` from the pod's first step's start; `gap_ms` since the
    previous step ended (negative when the two overlapped)."""

    call_id: int
    started_at: str
    method: str
    duration_ms: float
    offset_ms: float
    gap_ms: float
    status: str
    failed: bool
    pod_sandbox_id: str | None
    container_id: str | None
    container: str | None  # the container's name
    attempt: int | None  # RunPodSandbox's and CreateContainer's metadata.attempt: > 0 is a restart
    exit_code: int | None


@dataclass(frozen=True, slots=True)
class Summary:
    """A repeated call (status polls, exec probes) of one container or the sandbox."""

    method: str
    container: str | None
    calls: int
    failures: int
    first_at: str
    last_at: str
    first_offset_ms: float
    last_end_offset_ms: float
    max_ms: float | None
    exit_codes: dict[str, int] = field(default_factory=dict)  # ExecSync: exit code -> calls


@dataclass(frozen=True, slots=True)
class PodStory:
    namespace: str | None
    name: str | None
    sandbox_ids: list[str]
    containers: dict[str, str | None]  # container id -> name
    started_at: str | None
    wall_ms: float
    steps: list[Step]
    summaries: list[Summary]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prefix(conn: sqlite3.Connection, column: str, prefix: str) -> list[str]:
    return [row[0] for row in conn.execute(
        f"SELECT DISTINCT {column} FROM calls WHERE {column} >= ? AND {column} < ?", (prefix, prefix + _TOP))]


def _pod_of_container(conn: sqlite3.Connection, container_id: str) -> str | None:
    row = conn.execute("SELECT MAX(pod_sandbox_id) FROM calls WHERE container_id = ?", (container_id,)).fetchone()
    return None if row is None else row[0]


def _names(conn: sqlite3.Connection, sandbox_ids: list[str]) -> tuple[str | None, str | None]:
    marks = ",".join("?" * len(sandbox_ids))
    row = conn.execute(f"SELECT MAX(pod_namespace), MAX(pod_name) FROM calls WHERE pod_sandbox_id IN ({marks})",
                       sandbox_ids).fetchone()  # fmt: skip
    return (row[0], row[1]) if row else (None, None)


def resolve(conn: sqlite3.Connection, target: str) -> tuple[str | None, str | None, list[str], list[str]]:
    """(namespace, name, sandbox ids, lone container ids) of the pod `target` names.
    ConfigError when it names none, or (a prefix) more than one."""
    if "/" in target:
        namespace, _, name = target.partition("/")
        sandboxes = [row[0] for row in conn.execute(
            "SELECT DISTINCT pod_sandbox_id FROM calls WHERE pod_namespace = ? AND pod_name = ? "
            "AND pod_sandbox_id IS NOT NULL", (namespace, name))]  # fmt: skip
        if not sandboxes and conn.execute("SELECT 1 FROM calls WHERE pod_namespace = ? AND pod_name = ? LIMIT 1",
                                          (namespace, name)).fetchone() is None:  # fmt: skip
            raise ConfigError(f"no pod {target} in the recording")
        return namespace, name, sorted(sandboxes), []
    if not target:
        raise ConfigError("give a pod as NAMESPACE/NAME, or a pod sandbox or container id (or a prefix)")
    candidates: dict[str, str] = {sid: "pod sandbox" for sid in _prefix(conn, "pod_sandbox_id", target)}
    lone = []
    for cid in _prefix(conn, "container_id", target):
        pod = _pod_of_container(conn, cid)
        if pod is None:
            candidates.setdefault(cid, "container (pod unknown)")
            lone.append(cid)
        else:
            candidates.setdefault(pod, f"pod sandbox of container {cid[:13]}")
    if not candidates:
        raise ConfigError(f"no pod sandbox or container id starting with {target!r} in the recording")
    if len(candidates) > 1:
        listed = "; ".join(f"{cid} ({kind})" for cid, kind in sorted(candidates.items()))
        raise ConfigError(f"{target!r} is ambiguous: {len(candidates)} candidates: {listed}")
    (only, what), = candidates.items()
    if what.startswith("container"):
        return None, None, [], lone
    pod_namespace, pod_name = _names(conn, [only])
    return pod_namespace, pod_name, [only], []


def _calls(conn: sqlite3.Connection, namespace: str | None, name: str | None, sandboxes: list[str],
           containers: list[str]) -> list[tuple[Any, ...]]:  # fmt: skip
    """The pod's calls, in order."""
    parts: list[str] = []
    args: list[str | None] = []
    if sandboxes:
        parts.append(f"SELECT {_COLUMNS} FROM calls AS c WHERE c.pod_sandbox_id IN ({','.join('?' * len(sandboxes))})")
        args += sandboxes
    if containers:
        parts.append(f"SELECT {_COLUMNS} FROM calls AS c WHERE c.container_id IN ({','.join('?' * len(containers))})")
        args += containers
    if name is not None:
        parts.append(f"SELECT {_COLUMNS} FROM calls AS c WHERE c.pod_namespace = ? AND c.pod_name = ? "
                     "AND c.pod_sandbox_id IS NULL")  # fmt: skip
        parts.append(
            f"SELECT {_COLUMNS} FROM calls AS c JOIN messages AS m ON m.call_id = c.id AND m.direction = 'request' "
            "AND m.idx = 0 JOIN payloads AS p ON p.id = m.payload_id WHERE c.method = 'PullImage' "
            "AND json_extract(p.json, '$.sandbox_config.metadata.namespace') = ? "
            "AND json_extract(p.json, '$.sandbox_config.metadata.name') = ?")
        args += [namespace, name, namespace, name]
    if not parts:
        return []
    return conn.execute(" UNION ".join(parts) + " ORDER BY 3, 1", args).fetchall()


def _metadata(conn: sqlite3.Connection, call_ids: list[int]) -> dict[int, tuple[str | None, int | None]]:
    """call id -> (metadata.name, metadata.attempt) of RunPodSandbox and CreateContainer requests."""
    if not call_ids:
        return {}
    rows = conn.execute(
        "SELECT m.call_id, json_extract(p.json, '$.config.metadata.name'), "
        "COALESCE(json_extract(p.json, '$.config.metadata.attempt'), 0) FROM messages AS m "
        "JOIN payloads AS p ON p.id = m.payload_id WHERE m.direction = 'request' AND m.idx = 0 "
        f"AND m.call_id IN ({','.join('?' * len(call_ids))}) AND json_valid(p.json)", call_ids)
    return {call_id: (name, int(attempt) if attempt is not None else None) for call_id, name, attempt in rows}


def story(conn: sqlite3.Connection, target: str) -> PodStory:
    """The pod `target` names, its calls gathered into steps and summaries."""
    namespace, name, sandboxes, lone = resolve(conn, target)
    marks = ",".join("?" * len(sandboxes))
    containers = sorted({row[0] for row in conn.execute(
        f"SELECT DISTINCT container_id FROM calls WHERE pod_sandbox_id IN ({marks}) AND container_id IS NOT NULL",
        sandboxes)} | set(lone)) if sandboxes else lone  # fmt: skip
    rows = _calls(conn, namespace, name, sandboxes, containers)
    meta = _metadata(conn, [r[0] for r in rows if r[4] in ("RunPodSandbox", "CreateContainer")])
    names = {r[6]: meta.get(r[0], (None, None))[0] for r in rows if r[4] == "CreateContainer" and r[6]}
    return _build(namespace, name, sandboxes, {cid: names.get(cid) for cid in containers}, rows, meta)


def _build(namespace: str | None, name: str | None, sandboxes: list[str], containers: dict[str, str | None],
           rows: list[tuple[Any, ...]], meta: dict[int, tuple[str | None, int | None]]) -> PodStory:  # fmt: skip
    lifecycle = [r for r in rows if r[4] not in POLLS]
    origin = (lifecycle or rows)[0][2] if rows else 0.0
    steps: list[Step] = []
    previous_end = 0.0  # ms after origin
    for call_id, at, unix, ms, method, sid, cid, status, failed, exit_code in lifecycle:
        duration = float(ms or 0.0)
        offset = (unix - origin) * 1000
        attempt = meta.get(call_id, (None, None))[1] if method in ("RunPodSandbox", "CreateContainer") else None
        steps.append(Step(call_id, at, method, duration, round(offset, 3), round(offset - previous_end, 3),
                          status, bool(failed), sid, cid, containers.get(cid) if cid else None, attempt,
                          exit_code))  # fmt: skip
        previous_end = offset + duration
    wall = round(previous_end, 3) if steps else 0.0
    summaries = _summaries([r for r in rows if r[4] in POLLS], containers, origin)
    started = (lifecycle or rows)[0][1] if rows else None
    return PodStory(namespace, name, sandboxes, containers, started, wall, steps, summaries)


def _summaries(rows: list[tuple[Any, ...]], containers: dict[str, str | None], origin: float) -> list[Summary]:
    groups: dict[tuple[str, str | None], list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault((row[4], row[6]), []).append(row)
    found = []
    for (method, cid), calls in groups.items():
        exits: dict[str, int] = {}
        for row in calls:
            if row[9] is not None:
                exits[str(row[9])] = exits.get(str(row[9]), 0) + 1
        failures = sum(1 for r in calls if r[8] or (r[9] is not None and r[9] != 0))
        durations = [r[3] for r in calls if r[3] is not None]
        last = calls[-1]
        found.append(Summary(method, (containers.get(cid) or cid[:13]) if cid else None, len(calls), failures,
                             calls[0][1], last[1], round((calls[0][2] - origin) * 1000, 3),
                             round((last[2] - origin) * 1000 + (last[3] or 0.0), 3),
                             max(durations) if durations else None, exits))  # fmt: skip
    return sorted(found, key=lambda s: s.first_offset_ms)


def story_json(result: PodStory) -> str:
    return json.dumps(result.to_json(), ensure_ascii=False, indent=1)
