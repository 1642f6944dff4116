"""CRI method paths and the one method table.

`parse_path` is the only parser of `/runtime.v1.RuntimeService/Version`; `method_info`
looks a path up in the table generated from the CRI descriptors (`model/methods.py`, made
by `protos/generate.py`, checked against the descriptors by the tests). Nothing here loads
protobuf: the relay process uses it to route.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from cri_proxy.model.methods import METHOD_TABLE

API_VERSIONS: Final = ("v1", "v1alpha2")
RUNTIME_SERVICE: Final = "RuntimeService"
IMAGE_SERVICE: Final = "ImageService"

# Methods that change the node (or run something in it): never sampled away, and what
# replay refuses without --allow-mutations.
MUTATING: Final = frozenset({
    "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "CreateContainer", "StartContainer",
    "StopContainer", "RemoveContainer", "UpdateContainerResources", "ReopenContainerLog", "ExecSync",
    "Exec", "Attach", "PortForward", "UpdateRuntimeConfig", "CheckpointContainer",
    "UpdatePodSandboxResources", "CheckpointPod", "RestorePod", "PullImage", "RemoveImage",
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallPath:
    """A gRPC method path taken apart: "/runtime.v1.RuntimeService/Version"."""

    path: str
    service: str  # "runtime.v1.RuntimeService" (the full gRPC service name)
    method: str  # "Version"
    api: str | None  # "v1" / "v1alpha2" for CRI, None for any other service
    short_service: str  # "RuntimeService"

    @property
    def is_cri(self) -> bool:
        return self.api is not None

    @property
    def is_image(self) -> bool:
        return self.api is not None and self.short_service == IMAGE_SERVICE

    def in_api(self, api: str) -> str:
        """The same method's path in another CRI version (the path itself when not CRI)."""
        if self.api is None:
            return self.path
        return f"/runtime.{api}.{self.short_service}/{self.method}"


@functools.lru_cache(maxsize=1024)  # every stage asks, for every call, about a few dozen paths
def parse_path(path: str) -> CallPath:
    """Take a method path apart; never raises (an odd path gives empty parts)."""
    service, _, method = path.lstrip("/").rpartition("/")
    package, _, short = service.rpartition(".")
    api = None
    if package.startswith("runtime.") and package[8:] in API_VERSIONS:
        api = package[8:]
    return CallPath(path, service, method, api, short)


def api_version_of(path: str) -> str | None:
    """The CRI version a method path belongs to, or None for other services."""
    return parse_path(path).api


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One CRI method as the descriptors define it."""

    path: str
    request_type: str  # "runtime.v1.VersionRequest"
    response_type: str
    client_streaming: bool
    server_streaming: bool

    @property
    def mutating(self) -> bool:
        return parse_path(self.path).method in MUTATING


METHODS: Final[dict[str, MethodInfo]] = {
    path: MethodInfo(path, *row) for path, row in METHOD_TABLE.items()
}


def method_info(path: str) -> MethodInfo | None:
    """The table's entry for a path, None for a method neither CRI version defines."""
    return METHODS.get(path)


def is_mutating(path: str) -> bool:
    return parse_path(path).method in MUTATING
