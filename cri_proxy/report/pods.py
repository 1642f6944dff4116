"""One waterfall per pod: its calls in start order with their durations, from the sandbox's
RunPodSandbox to its RemovePodSandbox, the calls about its containers included (a container's
calls name only the container: CreateContainer ties it to its pod) and its image pulls (a
PullImage's request names the pod (`images_pulled`): it goes to the latest sandbox of that
name).

The calls a kubelet repeats for as long as a pod lives (status polls, stats, exec probes)
are summarised, one row per method and container (how many, from when to when, the slowest);
every other call, and every call that went wrong, is a row of its own, up to a cap. Pods
with problems come first when there are more pods than the page keeps.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cri_proxy.store.selection import Selection

POLLS = frozenset({"PodSandboxStatus", "ContainerStatus", "ContainerStats", "PodSandboxStats", "ExecSync"})
MAX_PODS = 300  # waterfalls on the page
MAX_ROWS = 80  # calls of their own per pod
MAX_INDEX = 3000  # pods in the index table


@dataclass(slots=True)
class Poll:
    count: int = 0
    first: float = 0.0
    last_end: float = 0.0
    total_ms: float = 0.0
    max_ms: float = 0.0
    slowest: int = 0  # call id


@dataclass(slots=True)
class Pod:
    key: str  # sandbox id; "container:<id>" when the container's pod is unknown, "pod:<ns>/<name>"
    # for calls that name a pod that has no sandbox (yet): a RunPodSandbox that failed
    name: str | None = None
    namespace: str | None = None
    first: float = 0.0
    last_end: float = 0.0
    calls: int = 0
    problems: int = 0
    cut: int = 0  # calls not given a row (over MAX_ROWS)
    containers: dict[str, str] = field(default_factory=dict)  # id -> name (or short id)
    rows: list[list[Any]] = field(default_factory=list)  # [call id, method, start, ms, status, container, kind]
    polls: dict[tuple[str, str], Poll] = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.namespace}/{self.name}" if self.name else self.key[:23]

    def summary(self) -> list[Any]:
        return [self.key, self.label(), self.first, round(self.last_end - self.first, 4), self.calls,
                self.problems, len(self.containers)]  # fmt: skip

    def waterfall(self) -> dict[str, Any]:
        polls = [[method, container, p.count, p.first, round(p.last_end - p.first, 4), round(p.total_ms, 3),
                  round(p.max_ms, 3), p.slowest] for (method, container), p in self.polls.items()]  # fmt: skip
        return {"key": self.key, "label": self.label(), "first": self.first, "wall": round(self.last_end - self.first, 4),
                "rows": self.rows, "polls": polls, "cut": self.cut}  # fmt: skip


def _container_pods(conn: sqlite3.Connection) -> dict[str, str]:
    """Container id -> its pod's sandbox id, over the whole recording (a window may start
    after the CreateContainer): CreateContainer is the call that names both."""
    return dict(conn.execute("SELECT container_id, MAX(pod_sandbox_id) FROM calls WHERE method = 'CreateContainer' "
                             "AND container_id IS NOT NULL AND pod_sandbox_id IS NOT NULL "
                             "GROUP BY container_id"))  # fmt: skip


def _container_names(conn: sqlite3.Connection) -> dict[str, str]:
    return {cid: name for cid, name in conn.execute(
        "SELECT c.container_id, json_extract(m.json, '$.config.metadata.name') FROM calls AS c "
        "JOIN call_messages AS m ON m.call_id = c.id AND m.direction = 'request' AND m.idx = 0 "
        "WHERE c.method = 'CreateContainer' AND c.container_id IS NOT NULL") if name}  # fmt: skip


def _pulls(conn: sqlite3.Connection) -> dict[int, tuple[str | None, str | None]]:
    """PullImage call id -> the pod it was for (its request's sandbox_config, `images_pulled`)."""
    return {call_id: (ns, name) for call_id, ns, name in conn.execute(
        "SELECT call_id, pod_namespace, pod_name FROM images_pulled WHERE pod_name IS NOT NULL")}  # fmt: skip


def read_pods(conn: sqlite3.Connection, selection: Selection,
              kinds: dict[int, str]) -> tuple[list[Pod], int]:  # fmt: skip
    """The pods of the selection, first seen first, and how many there were in all.
    `kinds` names the calls that went wrong (from the problems view)."""
    owner = _container_pods(conn)
    names = _container_names(conn)
    pulls = _pulls(conn)
    about_pods = ("c.pod_sandbox_id IS NOT NULL OR c.container_id IS NOT NULL OR c.pod_name IS NOT NULL "
                  "OR c.method = 'PullImage'")  # fmt: skip
    narrowed = dataclasses.replace(selection, where=f"({selection.where}) AND ({about_pods})"
                                   if selection.where else about_pods)  # fmt: skip
    where, args = narrowed.sql_where()
    cursor = conn.execute(
        "SELECT c.id, c.started_unix, c.duration_ms, c.method, c.pod_sandbox_id, c.container_id, c.pod_name, "
        f"c.pod_namespace, COALESCE(c.status_name, c.outcome) FROM calls AS c{where} ORDER BY c.started_unix, c.id",
        args)  # fmt: skip
    pods: dict[str, Pod] = {}
    by_name: dict[tuple[str, str], str] = {}  # the latest sandbox of each pod name
    while rows := cursor.fetchmany(2048):
        for call_id, started, ms, method, sandbox, container, name, ns, status in rows:
            if method == "PullImage" and not name:
                ns, name = pulls.get(call_id, (None, None))
                if not name:
                    continue  # a pull for no pod (crictl pull): no pod's story
            if sandbox and name:
                by_name[(ns, name)] = sandbox
            if sandbox or container:
                key = sandbox or owner.get(container) or f"container:{container}"
            else:  # PullImage, a RunPodSandbox that failed: the pod by its name
                key = by_name.get((ns, name)) or f"pod:{ns}/{name}"
            pod = pods.get(key)
            if pod is None:
                pod = pods[key] = Pod(key, first=started)
            _add(pod, call_id, started, ms or 0.0, method, container, name, ns, status, kinds.get(call_id), names)
    return list(pods.values()), len(pods)


def _add(pod: Pod, call_id: int, started: float, ms: float, method: str, container: str | None,
         name: str | None, ns: str | None, status: str, kind: str | None, names: dict[str, str]) -> None:  # fmt: skip
    pod.calls += 1
    pod.name = pod.name or name
    pod.namespace = pod.namespace or ns
    pod.last_end = max(pod.last_end, started + ms / 1000)
    short = ""
    if container:
        short = pod.containers.setdefault(container, names.get(container) or container[:12])
    if kind:
        pod.problems += 1
    if method in POLLS and not kind:
        p = pod.polls.get((method, short))
        if p is None:
            p = pod.polls[(method, short)] = Poll(first=started)
        p.count += 1
        p.last_end = max(p.last_end, started + ms / 1000)
        p.total_ms += ms
        if ms >= p.max_ms:
            p.max_ms, p.slowest = ms, call_id
        return
    if len(pod.rows) >= MAX_ROWS:
        pod.cut += 1
        return
    pod.rows.append([call_id, method, round(started - pod.first, 6), round(ms, 3), status, short, kind or ""])


def chosen(pods: list[Pod]) -> list[Pod]:
    """The pods that get a waterfall: with problems first, then the latest; shown first seen first."""
    ranked = sorted(pods, key=lambda p: (p.problems == 0, -p.first))[:MAX_PODS]
    return sorted(ranked, key=lambda p: p.first)
