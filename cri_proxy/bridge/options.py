"""The bridge's options, and the routing decision the front door makes with them.

`needs_bridge` and `relay_translation` are pure: the relay calls them once per client
connection, with the path of the connection's first call and the prober's current answer
(`UpstreamApis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cri_proxy.model.cri import IMAGE_SERVICE, RUNTIME_SERVICE, parse_path
from cri_proxy.model.upstream import EVENTS_NATIVE, UpstreamApis, service_key

UpstreamApi = Literal["auto", "v1", "v1alpha2"]
CgroupDriver = Literal["systemd", "cgroupfs"]


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    upstream_api: UpstreamApi = "auto"  # "auto": probe; otherwise trust the operator
    # Answer RuntimeConfig for runtimes that lack it; None answers UNIMPLEMENTED (the kubelet
    # then falls back to its own cgroupDriver setting, until about Kubernetes 1.38).
    cgroup_driver: CgroupDriver | None = None
    emulate_events: bool = False  # GetContainerEvents by relisting, for runtimes without it
    events_period: float = 1.0  # seconds between relists when emulating events
    strict: bool = False  # refuse security-relevant v1-only fields a v1alpha2 runtime drops
    max_message_bytes: int = 32 * 1024 * 1024  # both ways; the kubelet uses 16 MiB
    probe_timeout: float = 2.0  # seconds for each version probe call (cri_proxy.proxy.prober)

    def __post_init__(self) -> None:
        if self.upstream_api not in ("auto", "v1", "v1alpha2"):
            raise ValueError(f"upstream_api must be auto, v1 or v1alpha2, not {self.upstream_api!r}")
        if self.cgroup_driver not in (None, "systemd", "cgroupfs"):
            raise ValueError(f"cgroup_driver must be systemd or cgroupfs, not {self.cgroup_driver!r}")
        if self.events_period <= 0:
            raise ValueError("events_period must be positive")


def needs_bridge(client_path: str, apis: UpstreamApis, options: BridgeOptions) -> bool:
    """Whether a client connection whose first call is `client_path` must go to the bridge.

    True when the client's CRI version differs from what the upstream of that service speaks,
    or when a RuntimeService connection may ask for something the proxy answers itself
    (emulated GetContainerEvents). False for non-CRI paths (containerd's own API, health) and
    while the upstream's version is unknown (the relay then behaves as a plain relay).
    """
    call = parse_path(client_path)
    if call.api is None or call.short_service not in (RUNTIME_SERVICE, IMAGE_SERVICE):
        return False
    client_api, key = call.api, service_key(call.short_service)
    upstream = options.upstream_api if options.upstream_api != "auto" else apis.preferred_for(key)
    if upstream is None:
        return False
    speaks = apis.speaks(key) or (upstream,)
    if options.upstream_api == "auto" and client_api in speaks and upstream != client_api:
        return False  # the runtime serves the client's version too (containerd 1.6): relay it
    if upstream != client_api:
        return True
    return (
        key == "runtime"
        and options.emulate_events
        and client_api == "v1"
        and apis.events != EVENTS_NATIVE
    )


def relay_translation(client_path: str, apis: UpstreamApis, options: BridgeOptions) -> str | None:
    """The CRI version the relay itself translates a connection whose first call is
    `client_path` into (cri_proxy.proxy.translate), or None when it does not: same version,
    or the connection needs the bridge, which is only for what needs the proxy to run calls
    of its own (GetContainerEvents emulated by relisting)."""
    if not needs_bridge(client_path, apis, options):
        return None
    call = parse_path(client_path)
    client_api, key = call.api, service_key(call.short_service)
    upstream = options.upstream_api if options.upstream_api != "auto" else apis.preferred_for(key)
    if upstream is None or upstream == client_api:
        return None
    if options.emulate_events and client_api == "v1" and apis.events != EVENTS_NATIVE:
        return None  # any RuntimeService or ImageService connection may ask for events: the bridge
    return upstream
