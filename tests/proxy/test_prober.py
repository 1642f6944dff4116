"""The one version prober: raw HTTP/2 probes of what CRI versions a runtime speaks, answered
in the background, coalesced, and never decided by a probe that got no answer."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.upstream import UNKNOWN, UpstreamApis
from cri_proxy.proxy.prober import VersionProber, grpc_status

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
