"""One measured run: closed-loop callers on one route for a fixed window.

The load generator processes start together and call from a shared start time
(after a warm-up) to a shared end time; the driver reads the proxy's CPU time
at both edges of that window and its peak RSS after it.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from paths import Route
from procs import Children, cpu_seconds, log_tail, peak_rss_mb, process_tree

SERVICE = "/runtime.v1.RuntimeService/"
LAUNCH_S = 0.25  # time for the load generators to start and connect


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


@dataclass
class Result:
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
    rss_peak_mb: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def _split(callers: int, processes: int) -> list[int]:
    processes = max(1, min(callers, processes))
    return [callers // processes + (1 if i < callers % processes else 0) for i in range(processes)]


def _launch(children: Children, loadgen: Path, route: Route, work: Workload, request: Path,
            callers: int, window: tuple[float, float], out_dir: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    runs = []
    for i, count in enumerate(_split(callers, 2)):
        out = out_dir / f"lat{i}.txt"
        argv = [str(loadgen), f"unix:{route.socket}", SERVICE + work.method, str(request), str(count),
                f"{window[0]:.6f}", f"{window[1]:.6f}", str(out)] + (["stream"] if work.stream else [])
        runs.append((children.start(argv, out_dir / f"lat{i}.log"), out))
    return runs


def run(children: Children, loadgen: Path, route: Route, work: Workload, request: Path,
        load: Load, out_dir: Path) -> Result:
    """Drive `load.callers` callers through `route` for `load.duration` seconds."""
    start = time.time() + LAUNCH_S + load.warmup
    window = (start, start + load.duration)
    watched = process_tree(route.pid) if route.pid else []
    runs = _launch(children, loadgen, route, work, request, load.callers, window, out_dir)
    time.sleep(max(0.0, window[0] - time.time()))
    cpu_before = cpu_seconds(watched)
    time.sleep(max(0.0, window[1] - time.time()))
    cpu = cpu_seconds(watched) - cpu_before
    latencies: list[int] = []
    totals = [0, 0, 0]
    for proc, out in runs:
        code = proc.wait(timeout=120)
        children.stop(proc)
        if code != 0:
            raise RuntimeError(f"loadgen failed on {route.name}: {log_tail(out.with_suffix('.log'))}")
        counts = out.with_suffix(".log").read_text().splitlines()[-1].split()  # after any gRPC log lines
        totals = [t + int(c) for t, c in zip(totals, counts)]
        latencies.extend(int(line) for line in out.read_text().split())
    latencies.sort()
    return _result(route, work, load, totals, latencies, cpu, watched)


def _result(route: Route, work: Workload, load: Load, totals: list[int], latencies: list[int],
            cpu: float, watched: list[psutil.Process]) -> Result:
    calls, errors, messages = totals
    costed = bool(watched)
    return Result(
        route=route.name, workload=work.name, callers=load.callers, calls=calls, errors=errors,
        messages=messages, rps=calls / load.duration,
        p50_us=_percentile(latencies, 0.50), p99_us=_percentile(latencies, 0.99),
        cpu_pct=100 * cpu / load.duration if costed else None,
        cpu_s_per_1k=1000 * cpu / calls if costed and calls else None,
        rss_peak_mb=peak_rss_mb(watched) if costed else None,
    )
