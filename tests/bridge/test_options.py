"""cri_proxy/bridge/options.py: which calls the bridge takes (the rest stay on the byte relay)."""

from __future__ import annotations

import pytest

from cri_proxy.bridge import BridgeOptions, needs_bridge
from cri_proxy.model.upstream import UpstreamApis


def apis(runtime: str | None = None, image: str | None = None, events: str = "unknown",
         runtime_speaks: str | None = None, image_speaks: str | None = None) -> UpstreamApis:
    """The prober's answer, from the preferred versions (and every version served) of each."""
    def speaks(preferred: str | None, every: str | None) -> tuple[str, ...]:
        return tuple((every or preferred or "").split(",")) if (every or preferred) else ()
    image_api = speaks(image, image_speaks) if image is not None or image_speaks else ()
    return UpstreamApis(speaks(runtime, runtime_speaks), image_api, events)  # type: ignore[arg-type]


@pytest.mark.parametrize("path,found,options,expected", [
    ("/runtime.v1.RuntimeService/Version", apis("v1", "v1"), BridgeOptions(), False),
    ("/runtime.v1.RuntimeService/Version", apis("v1alpha2", "v1alpha2"), BridgeOptions(), True),
    ("/runtime.v1alpha2.RuntimeService/Version", apis("v1", "v1"), BridgeOptions(), True),
    ("/runtime.v1.ImageService/ListImages", apis("v1alpha2", "v1"), BridgeOptions(), False),
    ("/runtime.v1.RuntimeService/Version", apis(None, None), BridgeOptions(), False),
    ("/containerd.services.version.v1.Version/Version", apis("v1alpha2"), BridgeOptions(), False),
    ("/runtime.v1.RuntimeService/Status", apis("v1", events="missing"),
     BridgeOptions(emulate_events=True), True),
    ("/runtime.v1.RuntimeService/Status", apis("v1", events="native"),
     BridgeOptions(emulate_events=True), False),
    ("/runtime.v1.ImageService/ImageFsInfo", apis("v1", "v1", events="missing"),
     BridgeOptions(emulate_events=True), False),
    ("/runtime.v1.RuntimeService/Version", apis("v1"), BridgeOptions(upstream_api="v1alpha2"), True),
    # a runtime serving both versions (containerd 1.6): its v1alpha2 clients stay on the relay
    ("/runtime.v1alpha2.RuntimeService/Version", apis("v1", runtime_speaks="v1,v1alpha2"),
     BridgeOptions(), False),
    ("/runtime.v1alpha2.ImageService/ListImages", apis("v1", "v1", image_speaks="v1"),
     BridgeOptions(), True),
    ("/runtime.v1alpha2.RuntimeService/Version", apis("v1", runtime_speaks="v1,v1alpha2"),
     BridgeOptions(upstream_api="v1"), True),
])
def test_needs_bridge(path: str, found: UpstreamApis, options: BridgeOptions, expected: bool) -> None:
    assert needs_bridge(path, found, options) is expected
