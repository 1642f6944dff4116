"""What the bridge adds per small call, against calling the runtime directly.

`python -m cri_proxy.bridge.bench` starts a stand-in runtime (v1alpha2 only) and a bridge
in their own processes, then times `Version` from this process: sequential latency (p50,
p90) and the rate of 32 concurrent callers, direct (v1alpha2 client) and through the bridge
(v1 client, translated). A Python client is itself slow, so the rates understate what a C
client would see; the latency difference is the figure to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import grpc

RUNNER = """
import asyncio, sys, pathlib
from cri_proxy.bridge import Bridge, BridgeOptions
from cri_proxy.proxy.prober import VersionProber
async def main():
    prober = VersionProber(pathlib.Path(sys.argv[2]))
    await prober.reprobe()
    b = Bridge(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), None, apis=prober, options=BridgeOptions())
    await b.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


@contextlib.contextmanager
def _process(args: list[str], sock: pathlib.Path) -> Iterator[None]:
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.025)
        time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        proc.wait(5)


async def _measure(target: str, path: str, calls: int = 2000, callers: int = 32) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        version = channel.unary_unary(path, None, None)
        for _ in range(200):
            await version(b"")
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await version(b"")
            times.append(time.perf_counter() - t0)
        times.sort()

        async def worker(n: int) -> None:
            for _ in range(n):
                await version(b"")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(calls // callers) for _ in range(callers)))
        rate = (calls // callers) * callers / (time.perf_counter() - t0)
    return {"p50_us": statistics.median(times) * 1e6, "p90_us": times[int(len(times) * 0.9)] * 1e6,
            "rps_32": rate}


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="crip-bench-", dir="/tmp"))
    rt, br = tmp / "rt.sock", tmp / "br.sock"
    py = sys.executable
    with _process([py, "-m", "cri_proxy", "fake-runtime", "--listen", f"unix://{rt}",
                   "--api", "v1alpha2", "--log-level", "error"], rt), \
            _process([py, "-c", RUNNER, str(br), str(rt)], br):
        direct = asyncio.run(_measure(f"unix://{rt}", "/runtime.v1alpha2.RuntimeService/Version"))
        bridged = asyncio.run(_measure(f"unix://{br}", "/runtime.v1.RuntimeService/Version"))
    for name, got in (("direct v1alpha2", direct), ("v1 via bridge", bridged)):
        print(f"{name:16} p50 {got['p50_us']:7.0f} us  p90 {got['p90_us']:7.0f} us  "
              f"32 callers {got['rps_32']:7.0f} calls/s")
    print(f"added by the bridge: p50 +{bridged['p50_us'] - direct['p50_us']:.0f} us, "
          f"throughput {bridged['rps_32'] / direct['rps_32']:.0%} of direct")


if __name__ == "__main__":
    main()
