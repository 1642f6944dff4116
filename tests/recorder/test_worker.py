"""The recorder process's start (recorder.worker): how it tunes the garbage collector, and the
CPU priority it takes when it serves metrics alone."""

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


def niceness(pid: int) -> int:
    """The process's nice value, the 19th field of /proc/PID/stat."""
    return int(pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("record", [False, True], ids=["metrics-only", "with-db"])
async def test_serving_metrics_alone_the_recorder_yields_the_cpu_to_the_relay(
        sock_dir: pathlib.Path, runtime: pathlib.Path, record: bool) -> None:
    """Metrics alone, the recorder process runs at nice 19 (the relay at ours) and still
    counts every call; recording, it keeps our priority, so a flood does not make it skim."""
    ours = os.nice(0)
    listen = f"unix://{sock_dir}/m.sock"
    extra = ["--metrics-listen", listen] + (["--db", str(sock_dir / "calls.db")] if record else [])
    async with ProxyProcess(sock_dir / "p.sock", runtime, *extra) as proxy:
        async with grpc.aio.insecure_channel(f"unix://{sock_dir}/p.sock") as channel:
            stub = v1_grpc.RuntimeServiceStub(channel)
            for _ in range(3):
                await stub.Version(v1.VersionRequest(), timeout=5)
        assert proxy.proc is not None
        assert niceness(proxy.proc.pid) == ours
        assert niceness(recorder_pid(proxy)) == (ours if record else max(ours, 19))
        found: dict[str, float] = {}
        for _ in range(200):  # the three calls are counted (the recorder reads every 20 ms)
            found = samples((await asyncio.to_thread(get, listen, "/metrics"))[1])
            if total(found, "cri_proxy_calls_total") >= 3:
                break
            await asyncio.sleep(0.05)
        assert total(found, "cri_proxy_calls_total") == 3, proxy.log()
        assert await proxy.astop() == 0
