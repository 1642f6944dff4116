"""A synthetic recording of a busy node, for measuring the read side at scale (`cri-proxy
report`, stats, health): N calls (default a million) inserted by SQL into a database the
project's own migrations made (cri_proxy.store.db), in the `calls` row shape of
cri_proxy.store.rows, so it reads like a real recording.

The node: the kubelet relists (ListPodSandbox, ListContainers) every second with one
4-minute stall, polls stats every 10 s, and for each of about 20 live pods polls its sandbox
and container status and runs an exec probe every 10 s; pods come and go (RunPodSandbox,
PullImage, CreateContainer, StartContainer ... StopPodSandbox, RemovePodSandbox). Some
probes exit non-zero, some status calls answer NotFound, a few calls are cancelled, and the
recorder lost calls twice. About 8 calls a second: a million is some 34 hours.

    .venv/bin/python benchmarks/busy_node_recording.py /tmp/big.db --calls 1000000
    time .venv/bin/cri-proxy report /tmp/big.db -o /tmp/big.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cri_proxy.model.clock import utc_text  # noqa: E402
from cri_proxy.store.db import open_database  # noqa: E402
from cri_proxy.store.rows import INSERT_CALL  # noqa: E402

START = 1796000000.0  # 2026-11-30
SERVICE = "runtime.v1.RuntimeService"
Call = tuple[Any, ...]
STATUS = {0: "OK", 1: "CANCELLED", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND"}


class Node:
    """Emits (started, method, duration_ms, status, outcome, exit, sandbox, container, name,
    namespace, request json, response json) tuples in time order."""

    def __init__(self, seed: int) -> None:
        self.rand = random.Random(seed)
        self.pods: list[dict[str, str]] = []
        self.serial = 0

    def pod(self, t: float) -> Iterator[Call]:
        self.serial += 1
        n = self.serial
        sb, ct = hashlib.sha256(f"sb{n}".encode()).hexdigest(), hashlib.sha256(f"ct{n}".encode()).hexdigest()
        name, ns = f"web-{n}", ("default", "shop", "kube-system")[n % 3]
        meta = {"name": name, "namespace": ns, "uid": f"uid-{n}", "attempt": 0}
        yield t, "RunPodSandbox", 80 + self.rand.random() * 400, 0, None, None, sb, None, name, ns, \
            {"config": {"metadata": meta}}, {"pod_sandbox_id": sb}
        yield t + 0.5, "PullImage", 200 + self.rand.random() * 3000, 0, None, None, None, None, name, ns, \
            {"image": {"image": "registry.local/web:1.2"}, "sandbox_config": {"metadata": meta}}, {"image_ref": "sha256:ab"}
        yield t + 4, "CreateContainer", 20 + self.rand.random() * 80, 0, None, None, sb, ct, name, ns, \
            {"pod_sandbox_id": sb, "config": {"metadata": {"name": "web"}, "image": {"image": "registry.local/web:1.2"}},
             "sandbox_config": {"metadata": meta}}, {"container_id": ct}
        yield t + 4.2, "StartContainer", 30 + self.rand.random() * 200, 0, None, None, None, ct, None, None, \
            {"container_id": ct}, {}
        self.pods.append({"sb": sb, "ct": ct, "name": name, "ns": ns})

    def stop(self, t: float, p: dict[str, str]) -> Iterator[Call]:
        yield t, "StopContainer", 100 + self.rand.random() * 9000, 0, None, None, None, p["ct"], None, None, \
            {"container_id": p["ct"], "timeout": "30"}, {}
        yield t + 10, "StopPodSandbox", 50 + self.rand.random() * 200, 0, None, None, p["sb"], None, None, None, \
            {"pod_sandbox_id": p["sb"]}, {}
        yield t + 11, "RemoveContainer", 10 + self.rand.random() * 30, 0, None, None, None, p["ct"], None, None, \
            {"container_id": p["ct"]}, {}
        yield t + 12, "RemovePodSandbox", 10 + self.rand.random() * 30, 0, None, None, p["sb"], None, None, None, \
            {"pod_sandbox_id": p["sb"]}, {}

    def second(self, t: float, stalled: bool) -> Iterator[Call]:
        r = self.rand
        if not stalled:
            yield t, "ListPodSandbox", 0.5 + r.expovariate(1.5), 0, None, None, None, None, None, None, {}, {"items": []}
            yield t + 0.001, "ListContainers", 0.7 + r.expovariate(1.0), 0, None, None, None, None, None, None, {}, {"containers": []}
        s = int(t - START)
        if s % 10 == 0:
            yield t + 0.2, "ListContainerStats", 5 + r.expovariate(0.2), 0, None, None, None, None, None, None, {}, {"stats": []}
            yield t + 0.21, "ListPodSandboxStats", 6 + r.expovariate(0.2), 0, None, None, None, None, None, None, {}, {"stats": []}
        for i, p in enumerate(self.pods):
            if (s + i) % 10:
                continue
            yield t + 0.3, "PodSandboxStatus", 0.4 + r.expovariate(2), 0, None, None, p["sb"], None, None, None, \
                {"pod_sandbox_id": p["sb"]}, {"status": {"id": p["sb"], "state": "SANDBOX_READY"}}
            missing = r.random() < 0.002
            yield t + 0.31, "ContainerStatus", 0.4 + r.expovariate(2), 5 if missing else 0, None, None, None, p["ct"], \
                None, None, {"container_id": p["ct"]}, None if missing else {"status": {"id": p["ct"], "state": "CONTAINER_RUNNING"}}
            code = 1 if (self.serial + i) % 17 == 0 and r.random() < 0.5 else 0
            cancelled = r.random() < 0.0005
            yield t + 0.32, "ExecSync", 3 + r.expovariate(0.1), 1 if cancelled else 0, \
                "cancelled" if cancelled else None, None if cancelled else code, None, p["ct"], None, None, \
                {"container_id": p["ct"], "cmd": ["cat", "/tmp/healthy"], "timeout": "1"}, \
                None if cancelled else ({"exit_code": code, "stderr": "Y2F0OiAvdG1wL2hlYWx0aHk6IE5vIHN1Y2ggZmlsZQo="} if code else {})


def calls(count: int, seed: int) -> Iterator[Call]:
    node = Node(seed)
    made, t = 0, START
    for _ in range(20):
        yield from node.pod(t)
        made += 4
        t += 1
    stall = (START + 12 * 3600, START + 12 * 3600 + 240)
    while made < count:
        batch = list(node.second(t, stall[0] <= t < stall[1]))
        if node.rand.random() < 1 / 300:  # a pod every five minutes or so replaces the oldest
            batch += list(node.stop(t, node.pods.pop(0)))
            batch += list(node.pod(t + 0.05))
        batch.sort(key=lambda c: c[0])
        for c in batch[:count - made]:
            yield c
        made += len(batch)
        t += 1.0


def write(path: Path, count: int, seed: int = 7) -> int:
    conn = open_database(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO sessions (id, started_at, started_unix, cri_proxy_version, format_version, hostname, "
                 "calls_recorded, calls_lost, loss_episodes) VALUES (1, ?, ?, 'synthetic', 1, 'node-1', ?, 1234, 2)",
                 (utc_text(START), START, count))
    for at, lost in ((START + 20 * 3600, 1000), (START + 30 * 3600, 234)):
        conn.execute("INSERT INTO losses (session_id, started_at, ended_at, reason, calls_lost) VALUES (1, ?, ?, ?, ?)",
                     (utc_text(at), utc_text(at + 90), "queue full", lost))
    payloads: dict[str, int] = {}
    rows: list[Call] = []
    messages: list[Call] = []
    n = 0
    for call_id, (t, method, ms, code, outcome, exit_code, sb, ct, name, ns, req, resp) in enumerate(calls(count, seed), 1):
        rows.append((call_id, 1, 1, call_id, utc_text(t), t, round(ms, 3), SERVICE, method, f"/{SERVICE}/{method}", "v1", "v1",
                     None if outcome else code, None if outcome else STATUS[code], "not found" if code == 5 else None,
                     outcome or "completed", 10, 100, 1, 0 if resp is None else 1, 4242, 0, "unix:///run/containerd/containerd.sock",
                     None, None, None, 0, None, 1, sb, ct, None, name, ns, exit_code))
        for direction, body in (("request", req), ("response", resp)):
            if body is None:
                continue
            text = json.dumps(body, separators=(",", ":"))
            pid = payloads.get(text)
            if pid is None:
                pid = payloads[text] = len(payloads) + 1
                conn.execute("INSERT INTO payloads (id, sha256, size, data, json) VALUES (?, ?, ?, ?, ?)",
                             (pid, hashlib.sha256(text.encode()).hexdigest(), len(text), text.encode(), text))
            messages.append((call_id, direction, 0, 0.0 if direction == "request" else ms, pid))
        n = call_id
        if len(rows) >= 20000:
            _flush(conn, rows, messages)
    _flush(conn, rows, messages)
    conn.execute("COMMIT")
    conn.close()
    return n


def _flush(conn: sqlite3.Connection, rows: list[Call], messages: list[tuple[Any, ...]]) -> None:
    conn.executemany(INSERT_CALL.replace("INSERT INTO calls (", "INSERT INTO calls (id, ").replace("VALUES (", "VALUES (?, "), rows)
    conn.executemany("INSERT INTO messages (call_id, direction, idx, offset_ms, payload_id) VALUES (?, ?, ?, ?, ?)", messages)
    rows.clear()
    messages.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.path.exists():
        parser.error(f"{args.path} exists: give a new file")
    started = time.monotonic()
    n = write(args.path, args.calls)
    print(f"{args.path}: {n} calls in {time.monotonic() - started:.1f} s, {args.path.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
