"""How a node's stats figures move between two of the kubelet's polls, for storage.py.

The runtime's ListContainerStats and ListPodSandboxStats replies carry what the cgroups and
the snapshotter say at the moment each container is read. On a real node those figures are
not drawn afresh each time:
- cumulative counters grow by rate x interval: `usage_core_nano_seconds` by the container's
  CPU use (most containers of a node are idle, a few millicores; a few are busy), page
  faults by its activity, a pod's network bytes by its traffic;
- `usage_nano_cores` is what containerd works out from the last two reads (the counter's
  growth over the time between them), so it is fresh on every reply;
- memory gauges (`working_set_bytes`, `usage_bytes`, `rss_bytes`) move by pages, often not
  at all between two reads of an idle container; `available_bytes` is the limit less the
  working set (0 without a limit);
- timestamps: containerd reads the containers one after the other (a call to each one's
  shim), so each container's cpu, memory and swap share one read time 0.5-3 ms after the
  previous container's; the writable layer's usage comes from the snapshotter's own sync
  every 10 s (give or take 20 ms), every snapshot within about 0.1 ms of the one before,
  and rarely changes; swap is off (0), as the kubelet requires by default;
- the order: containerd lists its containers and pods from a Go map, so each reply gives
  them in another order (the map's order from a random place: a rotation), and it reads
  the containers in another walk of it than the one it lists them in (the pods in the
  order it lists them);
- ListPodSandboxStats: each pod's own cgroup (cpu, the memory figures, the process count),
  its network counters without a timestamp, and the stats of each of its containers read
  again, a few ms after the pod's (their `usage_nano_cores` from the read before, whichever
  call made it).

Checked against containerd 1.6.20 (benchmarks/real_stats.py, benchmarks/README.md "Stats
replies from a real containerd"): the read gaps, the rotation, the layers' sync and the pod
replies' shape are what it showed; it sends no swap (newer runtimes do; kept here).

`NodeFigures` is that model, seeded, so every run gives the same bytes. storage.py's older
model (`--stats random`) drew every counter's growth, every gauge's step and every read
time's 50 ms jitter uniformly at random on every reply, every container busy: about 3.4 KB
of information a reply that no node has.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TypeVar

SECOND_NS = 1_000_000_000
PAGE = 4096
_K = TypeVar("_K")
SYNC_NS = 10 * SECOND_NS  # containerd's snapshot usage sync (the CRI stats collect period)


@dataclass(slots=True)
class Cgroup:
    """One container's figures as its cgroup last showed them."""

    millicores: float  # its mean CPU use
    busy: float  # how likely its memory moves between two reads (0..1)
    limit_pages: int  # 0: no memory limit
    cpu_ns: int
    working_set: int  # pages, as the three below
    cache: int
    rss: int
    faults: int
    major_faults: int = 0
    fs_pages: int = 0
    inodes: int = 0
    read_at: int = 0
    nano_cores: int = 0
    fs_at: int = 0


def _workload(rng: random.Random, p: int) -> Cgroup:
    kind = rng.random()
    if kind < 0.7:  # idle: a sidecar, a controller waiting on a watch
        millicores, busy = rng.uniform(0.2, 3.0), 0.15
    elif kind < 0.95:
        millicores, busy = rng.uniform(5.0, 100.0), 0.6
    else:  # a busy service
        millicores, busy = rng.uniform(100.0, 800.0), 0.95
    ws = rng.randrange(2_000, 60_000)
    return Cgroup(millicores=millicores, busy=busy, limit_pages=rng.choice([0, 131_072, 262_144]),
                  cpu_ns=rng.randrange(10**9, 10**12), working_set=ws, cache=rng.randrange(100, 20_000),
                  rss=ws * 3 // 4, faults=rng.randrange(10**4, 10**7), major_faults=rng.randrange(50),
                  fs_pages=100 + p, inodes=20 + p)


class NodeFigures:
    """The containers' and pods' figures at each poll (`read` them in the runtime's order)."""

    def __init__(self, containers: list[tuple[int, int]], pods: int, seed: int = 2) -> None:
        self.rng = random.Random(seed)
        self.cgroups = {c: _workload(self.rng, c[0]) for c in containers}
        self.pods = {p: _workload(self.rng, p) for p in range(pods)}
        self.net = {p: [self.rng.randrange(10**6, 10**10), self.rng.randrange(10**6, 10**10),
                        self.rng.choice([300.0, 3_000.0, 300_000.0])] for p in range(pods)}
        self.processes = {p: 1 + sum(1 for c in containers if c[0] == p) for p in range(pods)}
        self._synced = -1

    def _sync_fs(self, now: int) -> None:
        """The snapshotter's sync: every writable layer measured in turn every SYNC_NS."""
        sync = now - now % SYNC_NS + 3_700_000_000  # its own phase, not the kubelet's
        if sync > now:
            sync -= SYNC_NS
        if sync == self._synced:
            return
        self._synced = sync
        rng = self.rng
        at = sync + rng.randrange(-20_000_000, 20_000_000)  # its ticker's own jitter
        for cg in self.cgroups.values():
            at += rng.randrange(20_000, 150_000)
            cg.fs_at = at
            if rng.random() < 0.02:  # a container that writes to its own filesystem
                cg.fs_pages += rng.randrange(1, 8)
                cg.inodes += rng.random() < 0.3

    def _read(self, cg: Cgroup, at: int) -> None:
        rng = self.rng
        dt = at - cg.read_at if cg.read_at else 10 * SECOND_NS
        used = int(cg.millicores * dt / 1000 * rng.uniform(0.7, 1.3))
        cg.cpu_ns += used
        cg.nano_cores = used * SECOND_NS // dt
        cg.read_at = at
        if rng.random() < cg.busy:
            step = 64 if cg.busy > 0.5 else 4
            moved = rng.randrange(-step, step + 1)
            cg.working_set = max(100, cg.working_set + moved)
            cg.rss = max(50, cg.rss + moved)
            cg.faults += rng.randrange(10, 40 * step)
            if rng.random() < 0.1:
                cg.cache = max(0, cg.cache + rng.randrange(-step, 2 * step))
        if rng.random() < 0.01:
            cg.major_faults += 1

    def _rotated(self, keys: list[_K]) -> list[_K]:
        """The runtime's order for this reply: its Go map's, from a random place."""
        start = self.rng.randrange(len(keys)) if keys else 0
        return keys[start:] + keys[:start]

    def read_containers(self, now: int) -> list[tuple[tuple[int, int], Cgroup]]:
        """Each container and its figures, read one after the other from a ms or two after
        `now`, in the reply's order (another walk of the map than the reads')."""
        self._sync_fs(now)
        at = now + self.rng.randrange(1_000_000, 2_000_000)
        for c in self._rotated(list(self.cgroups)):  # read in one walk of the map
            at += self.rng.randrange(500_000, 3_000_000)
            self._read(self.cgroups[c], at)
        return [(c, self.cgroups[c]) for c in self._rotated(list(self.cgroups))]  # listed in another

    def read_pods(self, now: int, containers: dict[int, list[tuple[int, int]]]) -> list[PodRead]:
        """Each pod (in the reply's order) with its figures, network counters (rx, tx bytes),
        process count and its containers read again after it."""
        at = now + self.rng.randrange(1_000_000, 2_000_000)
        out = []
        for p in self._rotated(list(self.pods)):
            cg = self.pods[p]
            at += self.rng.randrange(500_000, 3_000_000)
            dt = at - cg.read_at if cg.read_at else 10 * SECOND_NS
            self._read(cg, at)
            net = self.net[p]
            net[0] += int(net[2] * dt / SECOND_NS * self.rng.uniform(0.5, 1.5))
            net[1] += int(net[2] * dt / SECOND_NS * self.rng.uniform(0.5, 1.5))
            if self.rng.random() < 0.02:  # a probe's or an exec's process, come or gone
                self.processes[p] = max(1, self.processes[p] + self.rng.choice([-1, 1]))
            read = []
            for c in containers.get(p, []):
                at += self.rng.randrange(500_000, 3_000_000)
                self._read(self.cgroups[c], at)
                read.append((c, self.cgroups[c]))
            out.append(PodRead(p, cg, net[0], net[1], self.processes[p], read))
        return out


@dataclass(slots=True)
class PodRead:
    """One pod's entry of a ListPodSandboxStats reply."""

    pod: int
    cgroup: Cgroup
    rx: int
    tx: int
    processes: int
    containers: list[tuple[tuple[int, int], Cgroup]]


def available(cg: Cgroup) -> int:
    """available_bytes as containerd gives it: the limit less the working set, 0 without one."""
    return max(0, cg.limit_pages - cg.working_set) * PAGE if cg.limit_pages else 0
