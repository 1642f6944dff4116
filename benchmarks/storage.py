"""Bytes stored for a day of an 80-pod node, and how fast the writer stores them.

Run with the project's venv: `.venv/bin/python benchmarks/storage.py [--seconds 3600] [--pods 80]`.
It builds the calls a kubelet makes to its runtime over `--seconds` of simulated time (PLEG
relists every second, pod and container status once a minute per pod, exec probes, image
and runtime status, and stats replies every 10 s whose figures move as a node's do,
node_stats.py; `--stats random` draws them at random every time, the older model), with the
metadata grpc-go sends (a `grpc-timeout` that differs on every call), records them with the
real Recorder into a temp file, and prints bytes per call, bytes per day (scaled from the
simulated time), where they went (SQLite's dbstat per table and index), calls written per
second and the CPU the process used for them. Nothing in it is project-version specific
beyond the Recorder's public API, so the same script measures an older checkout:
`env PYTHONPATH=OLD OLD/.venv/bin/python benchmarks/storage.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from node_stats import PAGE, Cgroup, NodeFigures, available

from cri_proxy.model.call import Direction, Message, Outcome, RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.pb.runtime.v1 import api_pb2 as cri
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection

T0 = 1_800_000_000.0
UPSTREAM = "unix:///run/containerd/containerd.sock"
_REQUEST_METADATA = [("content-type", "application/grpc"), ("user-agent", "grpc-go/1.68.1"), ("te", "trailers")]


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


class Node:
    """An 80-pod node's objects, and the replies its runtime gives at a given second."""

    def __init__(self, pods: int, seed: int = 1, stats: str = "node") -> None:
        self.pods = pods
        self.rng = random.Random(seed)
        # An app and a sidecar in every pod, a third container in every other one: 200 for 80
        # pods, whose ListContainerStats reply is about the 111 KB.
        self.containers = [(p, k) for p in range(pods) for k in range(2 + (p % 2 == 0))]
        self.gauges: dict[object, int] = {}
        self.restarts = 0
        # "node": figures that move as a node's do (node_stats.py); "random": the older model,
        # every counter's growth and every read time drawn uniformly at random each time.
        self.figures = NodeFigures(self.containers, pods) if stats == "node" else None

    def pod_id(self, p: int) -> str:
        return _hex(f"pod{p}")

    def container_id(self, c: tuple[int, int]) -> str:
        return _hex(f"ctr{c}:{self.restarts if c[0] == 0 else 0}")

    def _labels(self, p: int, name: str) -> dict[str, str]:
        return {"io.kubernetes.pod.name": f"app-{p}-7d9f8b6c5-x{p:03d}", "io.kubernetes.pod.namespace": "default",
                "io.kubernetes.pod.uid": _hex(f"uid{p}")[:36], "io.kubernetes.container.name": name}

    def _cmeta(self, c: tuple[int, int]) -> cri.ContainerMetadata:
        return cri.ContainerMetadata(name="app" if c[1] == 0 else f"sidecar{c[1]}", attempt=0)

    def list_pods(self, second: int) -> bytes:
        items = [cri.PodSandbox(id=self.pod_id(p), metadata=cri.PodSandboxMetadata(
            name=f"app-{p}-7d9f8b6c5-x{p:03d}", uid=_hex(f"uid{p}")[:36], namespace="default"), state=0,
            created_at=1_763_900_000_000_000_000 + p, labels=self._labels(p, "POD")) for p in range(self.pods)]
        return cri.ListPodSandboxResponse(items=items).SerializeToString()

    def list_containers(self, second: int) -> bytes:
        items = [cri.Container(id=self.container_id(c), pod_sandbox_id=self.pod_id(c[0]), metadata=self._cmeta(c),
                               image=cri.ImageSpec(image=f"sha256:{_hex('img' + str(c[1]))}"),
                               image_ref=f"sha256:{_hex('img' + str(c[1]))}", state=1,
                               created_at=1_763_900_000_000_000_000 + c[0],
                               labels=self._labels(c[0], self._cmeta(c).name)) for c in self.containers]
        return cri.ListContainersResponse(containers=items).SerializeToString()

    def _walk(self, key: object, start: int, step: int, grow: bool = False) -> int:
        """A counter or gauge as the runtime reads it from the cgroup: counters grow by a few
        pages or cycles each time, gauges wander around their level."""
        value = self.gauges.get(key, start)
        delta = self.rng.randrange(step) if grow else self.rng.randrange(-step, step + 1)
        value = self.gauges[key] = max(0, value + delta)
        return value

    def container_stats(self, second: int) -> bytes:
        if self.figures is not None:
            return self._node_container_stats(second, self.figures)
        now = int((T0 + second) * 1e9)
        stats = []
        for c in self.containers:
            p, name = c[0], self._cmeta(c).name
            read_at = now + self.rng.randrange(50_000_000)  # each container's cgroup is read in turn
            walk = self._walk
            stats.append(cri.ContainerStats(
                attributes=cri.ContainerAttributes(id=self.container_id(c), metadata=self._cmeta(c),
                                                   labels=self._labels(p, name),
                                                   annotations={"io.kubernetes.container.hash": f"{p:08x}",
                                                                "io.kubernetes.container.restartCount": "0"}),
                cpu=cri.CpuUsage(timestamp=read_at,
                                 usage_core_nano_seconds=cri.UInt64Value(value=walk((c, "cpu"), 10**11, 2 * 10**9, True)),
                                 usage_nano_cores=cri.UInt64Value(value=walk((c, "cores"), 5 * 10**7, 10**7))),
                memory=cri.MemoryUsage(
                    timestamp=read_at,
                    working_set_bytes=cri.UInt64Value(value=4096 * walk((c, "ws"), 30_000, 64)),
                    available_bytes=cri.UInt64Value(value=4096 * walk((c, "avail"), 100_000, 64)),
                    usage_bytes=cri.UInt64Value(value=4096 * walk((c, "usage"), 40_000, 64)),
                    rss_bytes=cri.UInt64Value(value=4096 * walk((c, "rss"), 20_000, 32)),
                    page_faults=cri.UInt64Value(value=walk((c, "pf"), 10**6, 200, True)),
                    major_page_faults=cri.UInt64Value(value=walk((c, "mpf"), 10, 1, True))),
                writable_layer=cri.FilesystemUsage(
                    timestamp=now, fs_id=cri.FilesystemIdentifier(
                        mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"),
                    used_bytes=cri.UInt64Value(value=4096 * (100 + p)), inodes_used=cri.UInt64Value(value=20 + p)),
                swap=cri.SwapUsage(timestamp=read_at, swap_available_bytes=cri.UInt64Value(value=0),
                                   swap_usage_bytes=cri.UInt64Value(value=0))))
        return cri.ListContainerStatsResponse(stats=stats).SerializeToString()

    def _attributes(self, c: tuple[int, int]) -> cri.ContainerAttributes:
        p = c[0]
        return cri.ContainerAttributes(id=self.container_id(c), metadata=self._cmeta(c),
                                       labels=self._labels(p, self._cmeta(c).name),
                                       annotations={"io.kubernetes.container.hash": f"{p:08x}",
                                                    "io.kubernetes.container.restartCount": "0"})

    def _node_container(self, c: tuple[int, int], cg: Cgroup) -> cri.ContainerStats:
        u64 = cri.UInt64Value
        return cri.ContainerStats(
            attributes=self._attributes(c),
            cpu=cri.CpuUsage(timestamp=cg.read_at, usage_core_nano_seconds=u64(value=cg.cpu_ns),
                             usage_nano_cores=u64(value=cg.nano_cores)),
            memory=cri.MemoryUsage(
                timestamp=cg.read_at, working_set_bytes=u64(value=PAGE * cg.working_set),
                available_bytes=u64(value=available(cg)), usage_bytes=u64(value=PAGE * (cg.working_set + cg.cache)),
                rss_bytes=u64(value=PAGE * cg.rss), page_faults=u64(value=cg.faults),
                major_page_faults=u64(value=cg.major_faults)),
            writable_layer=cri.FilesystemUsage(
                timestamp=cg.fs_at, fs_id=cri.FilesystemIdentifier(
                    mountpoint="/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs"),
                used_bytes=u64(value=PAGE * cg.fs_pages), inodes_used=u64(value=cg.inodes)),
            swap=cri.SwapUsage(timestamp=cg.read_at, swap_available_bytes=u64(value=0),
                               swap_usage_bytes=u64(value=0)))

    def _node_container_stats(self, second: int, figures: NodeFigures) -> bytes:
        now = int((T0 + second) * 1e9)
        stats = [self._node_container(c, cg) for c, cg in figures.read_containers(now)]
        return cri.ListContainerStatsResponse(stats=stats).SerializeToString()

    def _node_pod_stats(self, second: int, figures: NodeFigures) -> bytes:
        """As containerd gives it: the pod's cgroup, its network (no timestamp), its process
        count and its containers' stats."""
        now = int((T0 + second) * 1e9)
        u64 = cri.UInt64Value
        by_pod: dict[int, list[tuple[int, int]]] = {}
        for c in self.containers:
            by_pod.setdefault(c[0], []).append(c)
        stats = []
        for read in figures.read_pods(now, by_pod):
            p, cg = read.pod, read.cgroup
            stats.append(cri.PodSandboxStats(
                attributes=cri.PodSandboxAttributes(id=self.pod_id(p), metadata=cri.PodSandboxMetadata(
                    name=f"app-{p}-7d9f8b6c5-x{p:03d}", uid=_hex(f"uid{p}")[:36], namespace="default"),
                    labels=self._labels(p, "POD")),
                linux=cri.LinuxPodSandboxStats(
                    cpu=cri.CpuUsage(timestamp=cg.read_at, usage_core_nano_seconds=u64(value=cg.cpu_ns),
                                     usage_nano_cores=u64(value=cg.nano_cores)),
                    memory=cri.MemoryUsage(
                        timestamp=cg.read_at, working_set_bytes=u64(value=PAGE * cg.working_set),
                        available_bytes=u64(value=available(cg)),
                        usage_bytes=u64(value=PAGE * (cg.working_set + cg.cache)), rss_bytes=u64(value=PAGE * cg.rss),
                        page_faults=u64(value=cg.faults), major_page_faults=u64(value=cg.major_faults)),
                    network=cri.NetworkUsage(default_interface=cri.NetworkInterfaceUsage(
                        name="eth0", rx_bytes=u64(value=read.rx), rx_errors=u64(value=0), tx_bytes=u64(value=read.tx),
                        tx_errors=u64(value=0))),
                    process=cri.ProcessUsage(timestamp=cg.read_at, process_count=u64(value=read.processes)),
                    containers=[self._node_container(c, ccg) for c, ccg in read.containers])))
        return cri.ListPodSandboxStatsResponse(stats=stats).SerializeToString()

    def pod_stats(self, second: int) -> bytes:
        if self.figures is not None:
            return self._node_pod_stats(second, self.figures)
        now = int((T0 + second) * 1e9)
        stats = [cri.PodSandboxStats(
            attributes=cri.PodSandboxAttributes(id=self.pod_id(p), metadata=cri.PodSandboxMetadata(
                name=f"app-{p}-7d9f8b6c5-x{p:03d}", uid=_hex(f"uid{p}")[:36], namespace="default"),
                labels=self._labels(p, "POD")),
            linux=cri.LinuxPodSandboxStats(
                cpu=cri.CpuUsage(timestamp=now, usage_core_nano_seconds=cri.UInt64Value(
                    value=self._walk((p, "pcpu"), 10**11, 4 * 10**9, True))),
                memory=cri.MemoryUsage(timestamp=now, working_set_bytes=cri.UInt64Value(
                    value=4096 * self._walk((p, "pws"), 60_000, 128))),
                network=cri.NetworkUsage(timestamp=now, default_interface=cri.NetworkInterfaceUsage(
                    name="eth0", rx_bytes=cri.UInt64Value(value=self._walk((p, "rx"), 10**8, 10**6, True)),
                    tx_bytes=cri.UInt64Value(value=self._walk((p, "tx"), 10**8, 10**6, True))))))
            for p in range(self.pods)]
        return cri.ListPodSandboxStatsResponse(stats=stats).SerializeToString()


def _timeout(started: float) -> str:
    """The kubelet's 2-minute deadline as grpc-go sends it: at most 8 digits, so milliseconds,
    less the few the call waited before it was sent."""
    return f"{120_000 - 1 - int(started * 7919) % 5}m"


def _call(method: str, started: float, request: bytes, response: bytes, image: bool = False) -> RecordedCall:
    path = f"/runtime.v1.{'ImageService' if image else 'RuntimeService'}/{method}"
    duration = 0.0005 + (len(response) / 2e8)
    call = RecordedCall(conn_id=1, stream_id=1, started_at=started, path=path, duration_s=duration,
                        upstream=UPSTREAM, peer_pid=1234, peer_uid=0, client_api="v1", upstream_api="v1",
                        request_metadata=[*_REQUEST_METADATA[:2], ("grpc-timeout", _timeout(started)),
                                          _REQUEST_METADATA[2]],
                        response_metadata=[("content-type", "application/grpc")],
                        trailers=[("grpc-status", "0"), ("grpc-message", "")], status_code=0,
                        outcome=Outcome.COMPLETED)
    call.add_message(Message(Direction.REQUEST, 0, 0.0, request))
    call.add_message(Message(Direction.RESPONSE, 0, duration, response))
    return call


def day_of_calls(seconds: int, pods: int, stats: str = "node") -> Iterator[RecordedCall]:
    """The kubelet's calls over `seconds` of simulated time, in order."""
    node = Node(pods, stats=stats)
    pod_req = {p: cri.PodSandboxStatusRequest(pod_sandbox_id=node.pod_id(p)).SerializeToString() for p in range(pods)}
    status = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[
        cri.RuntimeCondition(type="RuntimeReady", status=True),
        cri.RuntimeCondition(type="NetworkReady", status=True)])).SerializeToString()
    images = cri.ListImagesResponse(images=[cri.Image(id=f"sha256:{_hex(str(k))}", repo_tags=[f"registry.example/app{k}:1.0"],
                                                      size=12_345_678 + k) for k in range(40)]).SerializeToString()
    for s in range(seconds):
        t = T0 + s
        if s % 600 == 300:
            node.restarts += 1  # a container restarts every 10 minutes: the lists change
        yield _call("ListPodSandbox", t, cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(
            state=cri.PodSandboxStateValue(state=0))).SerializeToString(), node.list_pods(s))
        yield _call("ListContainers", t + 0.002, cri.ListContainersRequest().SerializeToString(), node.list_containers(s))
        for p in range(pods):  # each pod synced once a minute
            if (s + p) % 60 == 0:
                yield _call("PodSandboxStatus", t + 0.1, pod_req[p], cri.PodSandboxStatusResponse(
                    status=cri.PodSandboxStatus(id=node.pod_id(p), state=0)).SerializeToString())
                for c in node.containers:
                    if c[0] == p:
                        yield _call("ContainerStatus", t + 0.11, cri.ContainerStatusRequest(
                            container_id=node.container_id(c)).SerializeToString(), cri.ContainerStatusResponse(
                            status=cri.ContainerStatus(id=node.container_id(c), state=1)).SerializeToString())
        if s % 10 == 0:
            yield _call("ListContainerStats", t + 0.3, cri.ListContainerStatsRequest().SerializeToString(),
                        node.container_stats(s))
            yield _call("ListPodSandboxStats", t + 0.35, cri.ListPodSandboxStatsRequest().SerializeToString(),
                        node.pod_stats(s))
            yield _call("ImageFsInfo", t + 0.4, b"", cri.ImageFsInfoResponse(image_filesystems=[cri.FilesystemUsage(
                timestamp=int(t * 1e9), used_bytes=cri.UInt64Value(value=10**10 + s))]).SerializeToString(), image=True)
            for p in range(0, pods, 4):  # an exec readiness probe in every fourth pod
                yield _call("ExecSync", t + 0.5 + p / 1000, cri.ExecSyncRequest(
                    container_id=node.container_id((p, 0)), cmd=["cat", "/tmp/ready"], timeout=1).SerializeToString(),
                    cri.ExecSyncResponse(stdout=b"ok\n").SerializeToString())
        if s % 5 == 0:
            yield _call("Status", t + 0.6, b"", status)
        if s % 60 == 0:
            yield _call("ListImages", t + 0.7, b"", images, image=True)
            yield _call("Version", t + 0.8, b"", cri.VersionResponse(version="0.1.0", runtime_name="containerd",
                                                                     runtime_version="2.1.4").SerializeToString())


def breakdown(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    finally:
        conn.close()


def read_back(path: Path) -> float:
    """The CPU (this thread's) to read every call of the recording back with its messages."""
    conn = open_readonly(path)
    try:
        began = time.thread_time()
        loaded = load_calls(conn, Selection())
        return time.thread_time() - began if loaded else 0.0
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3600, help="simulated seconds of kubelet traffic")
    parser.add_argument("--pods", type=int, default=80)
    parser.add_argument("--stats", choices=["node", "random"], default="node",
                        help="stats figures that move as a node's do (node_stats.py), or drawn at random each time")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="copy the recording to this file, to look into it")
    parser.add_argument("--read-back", action="store_true",
                        help="then read every call back with its messages (the reader API) and print the CPU it took")
    args = parser.parse_args()
    calls = list(day_of_calls(args.seconds, args.pods, args.stats))
    message_bytes = sum(len(m.data) for c in calls for m in c.messages)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.db"
        recorder = Recorder(path, options=RecorderOptions(max_queue_calls=len(calls) + 1, max_queue_bytes=8 << 30))
        recorder.start()
        began, cpu = time.perf_counter(), time.process_time()
        for call in calls:
            recorder.submit(call)
        recorder.close(timeout_s=600)
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        stats = recorder.stats
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        recorded = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        conn.close()
        size = path.stat().st_size
        parts = breakdown(path)
        read_cpu = read_back(path) if args.read_back else None
        if args.keep:
            shutil.copyfile(path, args.keep)
    per_day = size * 86400 / args.seconds
    figures = {"calls": len(calls), "recorded": recorded, "lost": stats.lost, "calls_per_day": len(calls) * 86400 / args.seconds,
               "message_bytes_per_call": message_bytes / len(calls), "file_bytes": size,
               "bytes_per_call": size / len(calls), "mb_per_day": per_day / 1e6,
               "calls_written_per_s": len(calls) / elapsed, "cpu_s": cpu, "read_back_cpu_s": read_cpu,
               "parts": dict(parts)}
    print(f"{len(calls):,} calls over {args.seconds:,} s of an {args.pods}-pod node "
          f"({len(calls) / args.seconds:.1f}/s, {figures['calls_per_day']:,.0f} a day), "
          f"{message_bytes / len(calls):,.0f} message bytes per call; recorded {recorded:,}, lost {stats.lost}")
    print(f"file: {size:,} bytes, {size / len(calls):,.0f} bytes per call, {per_day / 1e6:,.1f} MB a day")
    print(f"writer: {len(calls) / elapsed:,.0f} calls written per second ({elapsed:.1f} s, {cpu:.1f} s of CPU)")
    if read_cpu is not None:
        print(f"read back: every call with its messages in {read_cpu:.2f} s of CPU")
    for name, nbytes in parts:
        print(f"  {name:28s} {nbytes:>12,} bytes  {nbytes / len(calls):8.1f} per call")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if recorded == len(calls) else 1


if __name__ == "__main__":
    sys.exit(main())
