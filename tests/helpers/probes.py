"""A recording of exec probes made through the recording proxy: ExecSync calls that exit 0,
3 and 7 (the 7 with stderr), and one call that fails with a gRPC error, for the tests of
`calls.exit_code` and what reads it (tail, stats, the failed_probes and problems views)."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

import grpc
import pytest

from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from tests.helpers.recordings import MISSING_ID, record_through_proxy, start_container

EXITS = (0, 3, 7)  # the probes' exit codes, in the order they ran
STDERR_7 = b"sh: probe-check: not found\n"  # what the stand-in runtime's shell says for the 7


async def drive_probes(channel: grpc.aio.Channel) -> None:
    rt = v1_grpc.RuntimeServiceStub(channel)
    _, ctr = await start_container(rt, "web", "u1", "app")
    scripts = {0: "exit 0", 3: "exit 3", 7: "probe-check; exit 7"}
    for code in EXITS:
        reply = await rt.ExecSync(v1.ExecSyncRequest(container_id=ctr, cmd=["sh", "-c", scripts[code]], timeout=5))
        assert reply.exit_code == code  # the runtime ran them as meant: the recording is what is tested
    with pytest.raises(grpc.aio.AioRpcError):
        await rt.ContainerStatus(v1.ContainerStatusRequest(container_id=MISSING_ID))


@pytest.fixture(scope="session")
def probe_recording() -> Iterator[pathlib.Path]:
    """The recording's database (shared: tests only read it)."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="crip-", dir="/tmp"))
    try:
        yield asyncio.run(record_through_proxy(folder, drive_probes))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
