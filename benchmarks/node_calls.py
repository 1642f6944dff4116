"""The calls a kubelet makes to its runtime on an 80-pod node, as storage.py records them.

`day_of_calls` yields them over a span of simulated time: PLEG relists every second, pod and
container status once a minute per pod, exec probes, image and runtime status, ImageFsInfo and
one stats call every 10 s (the kubelet calls ListContainerStats, or ListPodSandboxStats when
its PodAndContainerStatsFromCRI gate is on: never both, ../shared/notes/kubelet-and-runtimes.md;
`stats_calls="both"` polls both, the upper bound storage.py measured before), with the metadata
grpc-go sends. `Node` builds the replies; node_stats.py moves the stats figures as a node's do.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from node_stats import PAGE, Cgroup, NodeFigures, available

from cri_proxy.model.call import Direction, Message, Outcome, RecordedCall
from cri_proxy.pb.runtime.v1 import api_pb2 as cri

T0 = 1_800_000_000.0
UPSTREAM = "unix:///run/containerd/containerd.sock"
_REQUEST_METADATA = [("content-type", "application/grpc"), ("user-agent", "grpc-go/1.68.1"), ("te", "trailers")]


# Map fields (labels, annotations) in key order, as gogo-generated Go marshalers write them:
# the default order of Python's upb runtime follows a per-process hash seed, so two runs of
# the benchmark (base and branch) would record different bytes for the same calls.
SORTED = {"deterministic": True}

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
        return cri.ListPodSandboxResponse(items=items).SerializeToString(**SORTED)

    def list_containers(self, second: int) -> bytes:
        items = [cri.Container(id=self.container_id(c), pod_sandbox_id=self.pod_id(c[0]), metadata=self._cmeta(c),
                               image=cri.ImageSpec(image=f"sha256:{_hex('img' + str(c[1]))}"),
                               image_ref=f"sha256:{_hex('img' + str(c[1]))}", state=1,
                               created_at=1_763_900_000_000_000_000 + c[0],
                               labels=self._labels(c[0], self._cmeta(c).name)) for c in self.containers]
        return cri.ListContainersResponse(containers=items).SerializeToString(**SORTED)

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
        return cri.ListContainerStatsResponse(stats=stats).SerializeToString(**SORTED)

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
        return cri.ListContainerStatsResponse(stats=stats).SerializeToString(**SORTED)

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
        return cri.ListPodSandboxStatsResponse(stats=stats).SerializeToString(**SORTED)

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
        return cri.ListPodSandboxStatsResponse(stats=stats).SerializeToString(**SORTED)


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


def day_of_calls(seconds: int, pods: int, stats: str = "node", stats_calls: str = "container") -> Iterator[RecordedCall]:
    """The kubelet's calls over `seconds` of simulated time, in order; `stats_calls` is
    "container", "pod" or "both": which stats calls it makes every 10 s."""
    node = Node(pods, stats=stats)
    pod_req = {p: cri.PodSandboxStatusRequest(pod_sandbox_id=node.pod_id(p)).SerializeToString(**SORTED) for p in range(pods)}
    status = cri.StatusResponse(status=cri.RuntimeStatus(conditions=[
        cri.RuntimeCondition(type="RuntimeReady", status=True),
        cri.RuntimeCondition(type="NetworkReady", status=True)])).SerializeToString(**SORTED)
    images = cri.ListImagesResponse(images=[cri.Image(id=f"sha256:{_hex(str(k))}", repo_tags=[f"registry.example/app{k}:1.0"],
                                                      size=12_345_678 + k) for k in range(40)]).SerializeToString(**SORTED)
    for s in range(seconds):
        t = T0 + s
        if s % 600 == 300:
            node.restarts += 1  # a container restarts every 10 minutes: the lists change
        yield _call("ListPodSandbox", t, cri.ListPodSandboxRequest(filter=cri.PodSandboxFilter(
            state=cri.PodSandboxStateValue(state=0))).SerializeToString(**SORTED), node.list_pods(s))
        yield _call("ListContainers", t + 0.002, cri.ListContainersRequest().SerializeToString(**SORTED), node.list_containers(s))
        for p in range(pods):  # each pod synced once a minute
            if (s + p) % 60 == 0:
                yield _call("PodSandboxStatus", t + 0.1, pod_req[p], cri.PodSandboxStatusResponse(
                    status=cri.PodSandboxStatus(id=node.pod_id(p), state=0)).SerializeToString(**SORTED))
                for c in node.containers:
                    if c[0] == p:
                        yield _call("ContainerStatus", t + 0.11, cri.ContainerStatusRequest(
                            container_id=node.container_id(c)).SerializeToString(**SORTED), cri.ContainerStatusResponse(
                            status=cri.ContainerStatus(id=node.container_id(c), state=1)).SerializeToString(**SORTED))
        if s % 10 == 0:
            if stats_calls != "pod":
                yield _call("ListContainerStats", t + 0.3, cri.ListContainerStatsRequest().SerializeToString(**SORTED),
                            node.container_stats(s))
            if stats_calls != "container":
                yield _call("ListPodSandboxStats", t + 0.35, cri.ListPodSandboxStatsRequest().SerializeToString(**SORTED),
                            node.pod_stats(s))
            yield _call("ImageFsInfo", t + 0.4, b"", cri.ImageFsInfoResponse(image_filesystems=[cri.FilesystemUsage(
                timestamp=int(t * 1e9), used_bytes=cri.UInt64Value(value=10**10 + s))]).SerializeToString(**SORTED), image=True)
            for p in range(0, pods, 4):  # an exec readiness probe in every fourth pod
                yield _call("ExecSync", t + 0.5 + p / 1000, cri.ExecSyncRequest(
                    container_id=node.container_id((p, 0)), cmd=["cat", "/tmp/ready"], timeout=1).SerializeToString(**SORTED),
                    cri.ExecSyncResponse(stdout=b"ok\n").SerializeToString(**SORTED))
        if s % 5 == 0:
            yield _call("Status", t + 0.6, b"", status)
        if s % 60 == 0:
            yield _call("ListImages", t + 0.7, b"", images, image=True)
            yield _call("Version", t + 0.8, b"", cri.VersionResponse(version="0.1.0", runtime_name="containerd",
                                                                     runtime_version="2.1.4").SerializeToString(**SORTED))
