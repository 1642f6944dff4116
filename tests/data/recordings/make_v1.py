"""Makes schema-v1.db with the code of schema version 1 (commit 26413bc, before 0002_losses).

That version had no `demo --db` and no recording in `run` yet, so this wires its own pieces
together as its tests did: the stand-in runtime, the relay with a recording tap, and the
demo's kubelet round (a pod lifecycle, probes, two errors). Run from a checkout of that commit:

    PYTHONPATH=<checkout of 26413bc> python tests/data/recordings/make_v1.py OUT.db
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
import tempfile

import grpc

from cri_proxy.demo import Driver, kubelet_round
from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.forward.server import RelayServer
from cri_proxy.record.recorder import Recorder
from cri_proxy.record.tap import RecordingTap


async def main(db: pathlib.Path) -> None:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="golden-", dir="/tmp"))
    runtime = await start_fake_runtime(f"unix://{folder}/rt.sock")
    recorder = Recorder(db)
    recorder.start()
    relay = RelayServer(folder / "p.sock", folder / "rt.sock", tap=RecordingTap(recorder))
    await relay.start()
    async with grpc.aio.insecure_channel(f"unix://{folder}/p.sock") as channel:
        await kubelet_round(channel, Driver(print))
    await relay.stop(1.0)
    recorder.close()
    await runtime.stop(0)


if __name__ == "__main__":
    asyncio.run(main(pathlib.Path(sys.argv[1]).resolve()))
