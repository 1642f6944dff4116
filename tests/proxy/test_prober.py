"""The one version prober: raw HTTP/2 probes of what CRI versions a runtime speaks, answered
in the background, coalesced, and never decided by a probe that got no answer."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.upstream import UNKNOWN, UpstreamApis
from cri_proxy.proxy.prober import VersionProber, grpc_status
from tests.helpers.stall import StallingFront

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("api, speaks", [("v1", "v1"), ("v1alpha2", "v1alpha2"), ("both", "v1,v1alpha2")])
async def test_versions_of_each_kind_of_runtime(sock_dir: pathlib.Path, api: str, speaks: str) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api=api,  # type: ignore[arg-type]
                                       container_events=False)
    seen: list[UpstreamApis] = []
    prober = VersionProber(sock_dir / "rt.sock", None, emulate_events=True, on_change=seen.append)
    try:
        found = await prober.reprobe()
    finally:
        await runtime.stop(0)
        await prober.close()
    first = speaks.split(",")[0]
    assert found.preferred == found.preferred_for("image") == first
    assert found.runtime_api == found.image_api == speaks  # the session row's text, as before
    assert found.events == "missing"  # a v1alpha2 runtime has no GetContainerEvents either
    assert seen == [found] and prober.apis is found and prober.trouble is None


async def test_events_found_native_and_statuses(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    prober = VersionProber(sock_dir / "rt.sock", None, emulate_events=True)
    try:
        assert (await prober.reprobe()).events == "native"
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1.RuntimeService/Version", 2) == 0
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1alpha2.RuntimeService/Version", 2) == 12
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1.RuntimeService/ContainerStatus", 2) == 5
    finally:
        await runtime.stop(0)
        await prober.close()


async def test_an_unreachable_runtime_decides_nothing(sock_dir: pathlib.Path) -> None:
    assert await grpc_status(sock_dir / "nothing.sock", "/runtime.v1.RuntimeService/Version", 1) is None
    prober = VersionProber(sock_dir / "nothing.sock", None, emulate_events=False)
    try:
        assert await prober.reprobe() is UNKNOWN
        assert prober.trouble is not None and "gave no answer" in prober.trouble
    finally:
        await prober.close()


async def test_a_probe_that_gets_no_answer_decides_nothing(sock_dir: pathlib.Path) -> None:
    """Issue 11.6: a slow v1 probe once counted as "does not speak v1" and pinned the bridge."""
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="both")
    front = await StallingFront(sock_dir / "front.sock", sock_dir / "rt.sock", stall=1).start()
    changed = asyncio.Event()
    seen: list[UpstreamApis] = []

    def on_change(apis: UpstreamApis) -> None:
        seen.append(apis)
        changed.set()

    prober = VersionProber(sock_dir / "front.sock", timeout=0.3, backoff=0.05, on_change=on_change)
    try:
        assert await prober.reprobe() is UNKNOWN  # the v1 probe timed out: not "v1alpha2 only"
        assert prober.trouble is not None and "no answer to the CRI v1 version probe" in prober.trouble
        await asyncio.wait_for(changed.wait(), 5)  # asked again on its own, after a pause
        assert seen == [UpstreamApis(("v1", "v1alpha2"), ("v1", "v1alpha2"))]
        assert prober.trouble is None and front.connections[0].stalled
        # with an answer known, a slow answer keeps it (and says so) until the next one
        front.stall = 1
        assert await prober.reprobe() == seen[0] and prober.trouble is not None
        assert await prober.reprobe() == seen[0] and prober.trouble is None  # answered again
        assert seen == [UpstreamApis(("v1", "v1alpha2"), ("v1", "v1alpha2"))]  # never changed meanwhile
    finally:
        await prober.close()
        await front.close()
        await runtime.stop(0)


async def test_probes_are_coalesced(sock_dir: pathlib.Path) -> None:
    """However many things ask at once, one round is in flight, and one more follows it."""
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    front = await StallingFront(sock_dir / "front.sock", sock_dir / "rt.sock").start()
    prober = VersionProber(sock_dir / "front.sock")
    try:
        await prober.reprobe()
        before = len(front.connections)
        for _ in range(10):
            prober.probe_soon()  # one round starts
        await asyncio.gather(*(prober.reprobe() for _ in range(10)))  # asked while it runs
        assert prober.rounds == 3  # the first; one for the ten probe_soon; one for the ten reprobes
        assert len(front.connections) - before == 4  # v1 then v1alpha2 Version, in each of two rounds
    finally:
        await prober.close()
        await front.close()
        await runtime.stop(0)
