"""The recorder process's start (recorder.worker): how it tunes the garbage collector, and the
CPU priority its threads take."""

from __future__ import annotations

import asyncio
import gc
import os
import pathlib
import weakref

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.recorder.priority import YIELD_NICENESS, can_come_back
from cri_proxy.recorder.worker import GC_THRESHOLD, tune_gc
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess, recorder_pid
from tests.helpers.scrape import get, samples, total

pytestmark = pytest.mark.timeout(30)


def test_the_recorder_process_collects_its_youngest_objects_less_often() -> None:
    """tune_gc (the process's, before its loop): what was loaded at start is set aside and
    the youngest generation waits for GC_THRESHOLD allocations; cycles are still collected."""
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:]) and gc.get_freeze_count() > 0
        ring: list[object] = []
        ring.append(ring)
        alive = weakref.ref(Cycle(ring))
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class Cycle:
    def __init__(self, ring: list[object]) -> None:
        self.me = self
        self.ring = ring


def niceness(pid: int, tid: int | None = None) -> int:
    """The nice value of the process (its main thread), or of its thread `tid`: the 19th
    field of /proc/PID/stat."""
    stat = pathlib.Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    return int(stat.read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("record", [False, True], ids=["metrics-only", "with-db"])
async def test_serving_metrics_alone_the_recorder_yields_the_cpu_to_the_relay(
        sock_dir: pathlib.Path, runtime: pathlib.Path, record: bool) -> None:
    """Metrics alone, the recorder process runs at nice 19 (the relay at ours) and still
    counts every call (its metrics server answers at ours). Recording, only its recording thread (the main one) yields, and only
    while it keeps up and where it may take its full share back (recorder.priority); its
    other threads (the intake, the metrics server) keep our priority."""
    ours = os.nice(0)
    recording = min(19, ours + YIELD_NICENESS) if can_come_back(min(19, ours + YIELD_NICENESS)) else ours
    listen = f"unix://{sock_dir}/m.sock"
    extra = ["--metrics-listen", listen] + (["--db", str(sock_dir / "calls.db")] if record else [])
    async with ProxyProcess(sock_dir / "p.sock", runtime, *extra) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            stub = v1_grpc.RuntimeServiceStub(channel)
            for _ in range(3):
                await stub.Version(v1.VersionRequest(), timeout=5)
        assert proxy.proc is not None
        assert niceness(proxy.proc.pid) == ours
        pid = recorder_pid(proxy)
        assert niceness(pid) == (recording if record else max(ours, 19))
        others = {niceness(pid, int(tid)) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid}
        # Metrics alone, the intake starts after the process lowered its priority, the metrics
        # server before: a scrape is answered at once.
        assert others == ({ours} if record else {ours, max(ours, 19)})
        found: dict[str, float] = {}
        for _ in range(200):  # the three calls are counted (the recorder reads every 20 ms)
            found = samples((await asyncio.to_thread(get, listen, "/metrics"))[1])
            if total(found, "cri_proxy_calls_total") >= 3:
                break
            await asyncio.sleep(0.05)
        assert total(found, "cri_proxy_calls_total") == 3, proxy.log()
        assert await proxy.astop() == 0
