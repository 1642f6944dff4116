"""Makes a big recording (a million calls by default) shaped like a busy node's, fast, for
timing the read side: `stats`, `health`, `method_stats`, `pod`, the report (read_times.py and
report_scale.py use it).

    .venv/bin/python benchmarks/big_recording.py /tmp/big.db            # 1,000,000 calls, ~1 min
    .venv/bin/python benchmarks/big_recording.py /tmp/big.db --calls 200000 --pods 20

Not through the proxy (that would take an hour of kubelet time): the rows are written
directly, in the recording's own schema (store.db.open_database migrates a new file): thin
call rows and their shapes as the writer stores them (schema 12), with the rollups filled
by recorder.rollups.add from the rows (the writer counts the same as it makes them, Rollup).
The traffic is a kubelet's: every second a PLEG relist (ListPodSandbox then ListContainers)
and, per pod every 10 s, PodSandboxStatus, ContainerStatus and an exec probe (ExecSync;
a few exit non-zero), image and stats calls every 10-60 s, a few slow relists and gRPC
errors, one 4-minute stall with no relist at all (PLEG would report the runtime unhealthy),
a few probes cancelled, two episodes of calls the recorder lost, and pods created, started,
stopped and removed along the way. Durations are
log-normal around each method's usual latency. Seeded: the same arguments give the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cri_proxy.model.clock import utc_text  # noqa: E402
from cri_proxy.recorder import rollups  # noqa: E402
from cri_proxy.store import db  # noqa: E402
from cri_proxy.store.rows import CALL_COLUMNS, METADATA_COLUMNS, ROUTE_COLUMNS, SHAPE_COLUMNS  # noqa: E402

RUNTIME, IMAGE = "runtime.v1.RuntimeService", "runtime.v1.ImageService"
MEDIAN_MS = {"ListPodSandbox": 1.2, "ListContainers": 1.8, "PodSandboxStatus": 0.8, "ContainerStatus": 0.7,
             "ExecSync": 25.0, "ListImages": 3.0, "ImageFsInfo": 0.6, "ListContainerStats": 6.0,
             "Version": 0.2, "Status": 0.4, "RunPodSandbox": 400.0, "CreateContainer": 60.0,
             "StartContainer": 90.0, "StopContainer": 300.0, "RemoveContainer": 20.0,
             "StopPodSandbox": 80.0, "RemovePodSandbox": 30.0, "PullImage": 2500.0}  # fmt: skip
METADATA = json.dumps([["user-agent", "kubelet/v1.31.0 grpc-go/1.65.0"], ["content-type", "application/grpc"]])
Row = tuple[object, ...]


class Node:
    """The calls of a node whose kubelet runs `pods` pods of one container each."""

    def __init__(self, start: float, pods: int, seed: int, stall: range) -> None:
        self.rng = random.Random(seed)
        self.t = start
        self.stall = stall  # the seconds in which the runtime answers no relist
        self.pods = [self._pod(i) for i in range(pods)]
        self.payload_ids: dict[str, int] = {}
        self.payloads: list[Row] = []
        self.stream = 1

    def _pod(self, n: int) -> dict[str, str]:
        pod_hash = hashlib.sha256(f"pod{n}-{self.rng.random()}".encode()).hexdigest()
        ctr_hash = hashlib.sha256(pod_hash.encode()).hexdigest()
        return {"name": f"web-{n}", "namespace": "shop", "pod": pod_hash, "ctr": ctr_hash}

    def payload(self, body: dict[str, object]) -> int:
        text = json.dumps(body, separators=(",", ":"))
        found = self.payload_ids.get(text)
        if found is None:
            found = self.payload_ids[text] = len(self.payloads) + 1
            data = text.encode()
            self.payloads.append((found, hashlib.sha256(data).hexdigest(), len(data), data, text, 0))
        return found

    def duration(self, method: str) -> float:
        return round(MEDIAN_MS[method] * math.exp(self.rng.gauss(0, 0.45)), 3)

    def call(self, at: float, method: str, *, status: int = 0, duration: float | None = None,
             pod: dict[str, str] | None = None, ctr: bool = False, exit_code: int | None = None,
             request: dict[str, object] | None = None) -> tuple[Row, list[tuple[str, int]]]:  # fmt: skip
        service = IMAGE if method in ("ListImages", "ImageFsInfo", "PullImage") else RUNTIME
        ms = self.duration(method) if duration is None else duration
        names = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND"}
        self.stream += 2
        names_pod = pod is not None and method != "PullImage" and (not ctr or method == "CreateContainer")
        ids = (pod["pod"] if pod and names_pod else None, pod["ctr"] if pod and ctr else None, None,
               pod["name"] if pod and method in ("RunPodSandbox", "CreateContainer") else None,
               pod["namespace"] if pod and method in ("RunPodSandbox", "CreateContainer") else None)  # fmt: skip
        row = (1, 1, self.stream, utc_text(at), at, ms, service, method, f"/{service}/{method}", "v1", "v1",
               status, names[status], None if status == 0 else "injected", "cancelled" if status == 1 else "completed", 40, 200 if status == 0 else 0,
               1, 1 if status == 0 else 0, 4242, 0, "unix:///run/containerd/containerd.sock", METADATA, "[]",
               json.dumps([["grpc-status", str(status)]]), 0, None, 1, *ids, exit_code, None)  # fmt: skip
        messages = [("request", self.payload(request or {"method": method}))]
        if status == 0:
            messages.append(("response", self.payload({"exit_code": exit_code} if exit_code else {"ok": method})))
        return row, messages

    def second(self, s: int) -> Iterator[tuple[Row, list[tuple[str, int]]]]:
        """The calls of second `s` of the recording."""
        at = self.t + s
        if s == 0:  # the node's pods start as the recording does
            for i, pod in enumerate(self.pods):
                yield from self.start(pod, at + i * 0.02)
        slow = self.rng.random() < 0.0005  # a relist stuck behind a busy runtime now and then
        if s not in self.stall:
            yield self.call(at, "ListPodSandbox", duration=round(self.rng.uniform(2000, 9000), 3) if slow else None)
            yield self.call(at + 0.003, "ListContainers")
        for i, pod in enumerate(self.pods):
            if (s + i) % 10 == 0:
                at_pod = at + 0.01 + i * 0.001
                yield self.call(at_pod, "PodSandboxStatus", pod=pod)
                yield self.call(at_pod + 0.0005, "ContainerStatus", pod=pod, ctr=True)
                code = 1 if i == 3 and s % 600 < 120 else 0  # pod 3's probe fails two minutes in ten
                cancelled = self.rng.random() < 0.0005
                yield self.call(at_pod + 0.0008, "ExecSync", pod=pod, ctr=True, exit_code=None if cancelled else code,
                                status=1 if cancelled else 0,
                                request={"container_id": pod["ctr"], "cmd": ["/bin/check"], "timeout": 1})
        if s % 10 == 5:
            yield self.call(at + 0.5, "ListContainerStats")
            yield self.call(at + 0.6, "ImageFsInfo")
        if s % 60 == 30:
            yield self.call(at + 0.7, "ListImages")
            yield self.call(at + 0.71, "Version")
            yield self.call(at + 0.72, "Status")
        if self.rng.random() < 0.001:
            yield self.call(at + 0.8, "ContainerStatus", status=5, pod=self.rng.choice(self.pods), ctr=True)
        if s % 3600 == 1800:
            yield from self.churn(at + 0.9)

    def churn(self, at: float) -> Iterator[tuple[Row, list[tuple[str, int]]]]:
        """One pod replaced: its container and sandbox stopped and removed, a new one started."""
        old = self.rng.randrange(len(self.pods))
        pod = self.pods[old]
        for method, ctr in (("StopContainer", True), ("RemoveContainer", True), ("StopPodSandbox", False),
                            ("RemovePodSandbox", False)):  # fmt: skip
            yield self.call(at, method, pod=pod, ctr=ctr)
            at += 0.4
        new = self.pods[old] = self._pod(len(self.pods) + int(at))
        yield from self.start(new, at)

    def start(self, pod: dict[str, str], at: float) -> Iterator[tuple[Row, list[tuple[str, int]]]]:
        """A pod's sandbox, image pull and container, one after the other as the kubelet does."""
        sandbox = {"config": {"metadata": {"name": pod["name"], "namespace": pod["namespace"], "attempt": 0}}}
        requests = {"RunPodSandbox": sandbox,
                    "PullImage": {"image": {"image": "nginx:1"}, "sandbox_config": sandbox["config"]},
                    "CreateContainer": {"config": {"metadata": {"name": "app", "attempt": 0}},
                                        "sandbox_config": sandbox["config"]}}  # fmt: skip
        for method, ctr in (("RunPodSandbox", False), ("PullImage", False), ("CreateContainer", True),
                            ("StartContainer", True)):  # fmt: skip
            row, messages = self.call(at, method, pod=pod, ctr=ctr, request=requests.get(method))
            yield row, messages
            at += float(row[5]) / 1000 + 0.002


ROW_COLUMNS = ("id", "session_id", "conn_id", "stream_id", "started_unix", "duration_us", "shape_id",
               "request_offset_us", "response_offset_us")
_AT = {name: i for i, name in enumerate(CALL_COLUMNS)}
# A shape's columns from a `calls` row; its metadata is kept as text in the shape (as the
# `calls` view's trigger keeps it), which reads back the same as sets would.
_SHAPE_FROM_ROW = [name for name in SHAPE_COLUMNS if name in _AT]


class Shapes:
    """The routes, shapes and shape messages of the calls, numbered as they are first met."""

    def __init__(self) -> None:
        self.routes: dict[tuple[object, ...], int] = {}
        self.shapes: dict[tuple[object, ...], int] = {}

    def row(self, call_id: int, row: Row, messages: list[tuple[str, int]]) -> Row:
        """The thin `call_rows` row of a call (`row` in CALL_COLUMNS order)."""
        route = tuple(row[_AT[name]] for name in ROUTE_COLUMNS)
        route_id = self.routes.setdefault(route, len(self.routes) + 1)
        bodies = dict(messages)
        key = (route_id, *(row[_AT[name]] for name in _SHAPE_FROM_ROW), *(row[_AT[name]] for name in METADATA_COLUMNS),
               bodies.get("request"), bodies.get("response"))
        shape_id = self.shapes.setdefault(key, len(self.shapes) + 1)
        ms = row[_AT["duration_ms"]]
        return (call_id, row[0], row[1], row[2], row[_AT["started_unix"]],
                None if ms is None else round(float(ms) * 1000), shape_id,  # type: ignore[arg-type]
                0 if "request" in bodies else None, 0 if "response" in bodies else None)

    def insert(self, conn: sqlite3.Connection) -> None:
        conn.executemany(f"INSERT INTO routes (id, {', '.join(ROUTE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                         [(i, *route) for route, i in self.routes.items()])
        columns = ("id", "route_id", *_SHAPE_FROM_ROW, *METADATA_COLUMNS, "request_payload", "response_payload")
        conn.executemany(f"INSERT INTO call_shapes ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                         [(i, *key[:-2], *(None if p is None else p * 2 for p in key[-2:]))
                          for key, i in self.shapes.items()])
        conn.executemany("INSERT INTO shape_messages (shape_id, kind, idx, payload_id) VALUES (?, ?, 0, ?)",
                         [(i, kind, key[-2 + kind]) for key, i in self.shapes.items() for kind in (0, 1)
                          if key[-2 + kind] is not None])


def build(path: Path, calls: int, pods: int, seed: int) -> tuple[int, float]:
    """Writes the recording; (calls written, seconds of traffic)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = db.open_database(path)
    end = time.time()
    per_second = 2 + pods * 3 / 10 + 0.35
    span = int(calls / per_second)
    stall_at = 12 * 3600 if span > 13 * 3600 else span * 2 // 5
    node = Node(end - calls / per_second, pods, seed, range(stall_at, stall_at + 240))
    conn.execute("INSERT INTO sessions (id, started_at, started_unix, cri_proxy_version, format_version, hostname, "
                 "pid, listen, runtime_endpoint, runtime_api, image_api) VALUES "
                 "(1, ?, ?, 'bench', 1, 'node-1', 1, 'unix:///run/cri-proxy.sock', "
                 "'unix:///run/containerd/containerd.sock', 'v1', 'v1')", (utc_text(node.t), node.t))  # fmt: skip
    shapes = Shapes()
    written, s = 0, 0
    conn.execute("BEGIN IMMEDIATE")
    while written < calls:
        rows = []
        for row, msgs in node.second(s):
            written += 1
            rows.append(shapes.row(written, row, msgs))
            if written >= calls:
                break
        conn.executemany(f"INSERT INTO call_rows ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
                         rows)
        s += 1
    shapes.insert(conn)
    conn.executemany("INSERT INTO payloads (id, sha256, size, data, json, truncated) VALUES (?, ?, ?, ?, ?, ?)",
                     node.payloads)
    losses = [(span * 5 // 6, 1000), (span * 11 // 12, 234)]  # two episodes, as a flood makes them
    conn.executemany("INSERT INTO losses (session_id, started_at, ended_at, reason, calls_lost) VALUES (1, ?, ?, ?, ?)",
                     [(utc_text(node.t + at), utc_text(node.t + at + 90), "queue full", lost) for at, lost in losses])
    rollups.add(conn, 0)
    conn.execute("UPDATE sessions SET calls_recorded = ?, calls_lost = ?, loss_episodes = ?, ended_at = ? WHERE id = 1",
                 (written, sum(lost for _, lost in losses), len(losses), utc_text(node.t + s)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return written, float(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    written, seconds = build(args.path, args.calls, args.pods, args.seed)
    size = os.path.getsize(args.path)
    print(f"{args.path}: {written} calls over {seconds / 3600:.1f} h of traffic, {size / 1e6:.0f} MB, "
          f"made in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
