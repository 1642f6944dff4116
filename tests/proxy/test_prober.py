"""The relay's raw HTTP/2 probe of what CRI versions a runtime speaks."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.proxy.prober import UpstreamVersions, grpc_status

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("api, speaks", [("v1", "v1"), ("v1alpha2", "v1alpha2"), ("both", "v1,v1alpha2")])
async def test_versions_of_each_kind_of_runtime(sock_dir: pathlib.Path, api: str, speaks: str) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api=api,  # type: ignore[arg-type]
                                       container_events=False)
    seen: list[dict[str, str | None]] = []
    try:
        versions = UpstreamVersions(sock_dir / "rt.sock", None, emulate_events=True, on_change=seen.append)
        await versions.refresh()
    finally:
        await runtime.stop(0)
    first = speaks.split(",")[0]
    assert versions.negotiated["runtime"] == versions.negotiated["image"] == first
    assert versions.negotiated["runtime_speaks"] == versions.negotiated["image_speaks"] == speaks
    assert versions.negotiated.get("events") == ("missing" if first == "v1" else None)
    assert seen == [versions.negotiated] and not versions.stale


async def test_events_found_native_and_statuses(sock_dir: pathlib.Path) -> None:
    runtime = await start_fake_runtime(f"unix://{sock_dir}/rt.sock", api="v1")
    try:
        versions = UpstreamVersions(sock_dir / "rt.sock", None, emulate_events=True)
        await versions.refresh()
        assert versions.negotiated["events"] == "native"
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1.RuntimeService/Version", 2) == 0
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1alpha2.RuntimeService/Version", 2) == 12
        assert await grpc_status(sock_dir / "rt.sock", "/runtime.v1.RuntimeService/ContainerStatus", 2) == 5
    finally:
        await runtime.stop(0)


async def test_an_unreachable_runtime_stays_stale(sock_dir: pathlib.Path) -> None:
    assert await grpc_status(sock_dir / "nothing.sock", "/runtime.v1.RuntimeService/Version", 1) is None
    versions = UpstreamVersions(sock_dir / "nothing.sock", None, emulate_events=False)
    await versions.refresh()
    assert versions.stale and versions.negotiated == {}
