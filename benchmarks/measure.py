"""Measured runs: closed-loop callers on one route for a fixed window, and their summary.

The load generator processes start together and call from a shared start time
(after a warm-up) to a shared end time; the driver reads the route's CPU time at
both edges of that window. It also counts the CPU that processes other than the
benchmark's own used meanwhile: on a shared 2-core machine that is the noise.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from paths import Route
from procs import Children, cpu_seconds, log_tail, peak_rss_mb, process_tree

SERVICE = "/runtime.v1.RuntimeService/"
LAUNCH_S = 0.1  # time for the load generators to start and connect


@dataclass(frozen=True)
class Workload:
    name: str
    method: str
    stream: bool = False


@dataclass(frozen=True)
class Load:
    callers: int
    warmup: float
    duration: float
    clients: int = 2  # load generator processes the callers are spread over


@dataclass
class Sample:
    """One window on one route."""

    duration: float
    counts: tuple[int, int, int]  # calls, errors, stream messages
    latencies_ns: list[int]
    route_cpu_s: float
    loadgen_cpu_s: float
    other_cpu_s: float  # used by processes that are not the benchmark's ...
    other_wall_s: float  # ... over this long (launch to exit of the load generators), as loadgen_cpu_s
    drain_s: float = 0.0  # how long the route kept working after the window


@dataclass
class Result:
    """All windows of one route x workload x callers, summed."""

    route: str
    workload: str
    callers: int
    calls: int
    errors: int
    messages: int
    rps: float
    p50_us: float
    p99_us: float
    cpu_pct: float | None  # of one core, summed over the route's processes
    cpu_s_per_1k: float | None  # CPU seconds per 1000 calls
    rss_peak_mb: float | None  # lifetime peak so far (VmHWM)
    window_rps: list[int]  # each window's RPC/s, in the order run
    loadgen_cpu_pct: float  # the load generators' CPU, % of one core (launch to exit)
    other_cpu_pct: float  # machine noise: other processes' CPU, % of one core

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _split(callers: int, processes: int) -> list[int]:
    processes = max(1, min(callers, processes))
    return [callers // processes + (1 if i < callers % processes else 0) for i in range(processes)]


def _launch(children: Children, loadgen: Path, route: Route, work: Workload, request: Path,
            load: Load, window: tuple[float, float], out_dir: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    runs = []
    for i, count in enumerate(_split(load.callers, load.clients)):
        out = out_dir / f"lat{i}.txt"
        argv = [str(loadgen), f"unix:{route.socket}", SERVICE + work.method, str(request), str(count),
                f"{window[0]:.6f}", f"{window[1]:.6f}", str(out)] + (["stream"] if work.stream else [])
        runs.append((children.start(argv, out_dir / f"lat{i}.log"), out))
    return runs


def _collect(children: Children, route: Route, runs: list[tuple[subprocess.Popen[bytes], Path]]
             ) -> tuple[tuple[int, int, int], list[int]]:
    totals, latencies = [0, 0, 0], list[int]()
    for proc, out in runs:
        code = proc.wait(timeout=120)
        children.stop(proc)
        log = out.with_suffix(".log")
        if code != 0:
            raise RuntimeError(f"loadgen failed on {route.name}: {log_tail(log)}")
        counts = log.read_text().splitlines()[-1].split()  # after any gRPC log lines
        totals = [t + int(c) for t, c in zip(totals, counts)]
        latencies.extend(int(line) for line in out.read_text().split())
    return (totals[0], totals[1], totals[2]), latencies


def _busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(max_noise_pct: float, limit_s: float, step_s: float = 0.1) -> None:
    """Wait (at most `limit_s`) for a moment when the machine's CPU use is under `max_noise_pct`.

    Called between windows, when the benchmark's own processes are idle: what runs then is
    someone else's work, which would otherwise land in the next window.
    """
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = _busy_s()
        time.sleep(step_s)
        if 100 * (_busy_s() - before) / step_s < max_noise_pct:
            return


def run(children: Children, loadgen: Path, route: Route, work: Workload, request: Path,
        load: Load, out_dir: Path, own: list[psutil.Process]) -> Sample:
    """Drive `load.callers` callers through `route` for `load.duration` seconds.

    `own`: the benchmark's long-lived processes (backend and every route's), for the noise count.
    """
    start = time.time() + LAUNCH_S + load.warmup
    window = (start, start + load.duration)
    watched = process_tree(route.pid) if route.pid else []
    marks = (_busy_s(), _children_s(), time.process_time() + cpu_seconds(own), time.monotonic())
    runs = _launch(children, loadgen, route, work, request, load, window, out_dir)
    time.sleep(max(0.0, window[0] - time.time()))
    cpu_before = cpu_seconds(watched)
    time.sleep(max(0.0, window[1] - time.time()))
    counts, latencies = _collect(children, route, runs)
    drain = settle(watched)
    route_cpu = cpu_seconds(watched) - cpu_before  # with what it did after the window (a recorder catching up)
    loadgen_cpu = _children_s() - marks[1]
    ours = loadgen_cpu + time.process_time() + cpu_seconds(own) - marks[2]
    other = max(0.0, _busy_s() - marks[0] - ours)
    return Sample(load.duration, counts, latencies, route_cpu, loadgen_cpu, other, time.monotonic() - marks[3], drain)


def settle(procs: list[psutil.Process], idle_pct: float = 5.0, limit_s: float = 60.0, step_s: float = 0.1) -> float:
    """Wait until `procs` use under `idle_pct` of a core (a recorder that trails the relay
    finishing its work); returns how long that took after the window."""
    start = time.monotonic()
    while procs and time.monotonic() - start < limit_s:
        before = cpu_seconds(procs)
        time.sleep(step_s)
        if 100 * (cpu_seconds(procs) - before) / step_s < idle_pct:
            break
    return time.monotonic() - start


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def summarize(route: Route, work: Workload, callers: int, samples: list[Sample]) -> Result:
    """RPC/s and p50: the median over windows, so one window hit by other work does not move
    them; p99 over all calls pooled; CPU and noise summed over all windows."""
    duration = sum(s.duration for s in samples)
    calls, errors, messages = (sum(s.counts[i] for s in samples) for i in range(3))
    latencies = sorted(ns for s in samples for ns in s.latencies_ns)
    p50s = [_percentile(sorted(s.latencies_ns), 0.50) for s in samples]
    cpu = sum(s.route_cpu_s for s in samples)
    costed = route.pid is not None
    return Result(
        route=route.name, workload=work.name, callers=callers, calls=calls, errors=errors,
        messages=messages, rps=statistics.median(s.counts[0] / s.duration for s in samples),
        p50_us=statistics.median(p50s), p99_us=_percentile(latencies, 0.99),
        window_rps=[round(s.counts[0] / s.duration) for s in samples],
        cpu_pct=100 * cpu / duration if costed else None,
        cpu_s_per_1k=1000 * cpu / calls if costed and calls else None,
        rss_peak_mb=peak_rss_mb(process_tree(route.pid)) if route.pid else None,
        loadgen_cpu_pct=100 * sum(s.loadgen_cpu_s for s in samples) / sum(s.other_wall_s for s in samples),
        other_cpu_pct=100 * sum(s.other_cpu_s for s in samples) / sum(s.other_wall_s for s in samples),
    )
