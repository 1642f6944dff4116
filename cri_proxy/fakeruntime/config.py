"""Options of the fake runtime, and the base its servicers share."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Literal

import grpc

from cri_proxy.fakeruntime.images import DEFAULT_IMAGES, PreloadedImage
from cri_proxy.fakeruntime.state import RuntimeState

ApiMode = Literal["v1", "v1alpha2", "both"]
CgroupDriver = Literal["systemd", "cgroupfs"]

# The kubelet sends and accepts messages up to 16 MiB; serve more so the fake runtime can
# also produce replies that are too big for the kubelet.
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024

# A container annotation whose integer value pads that container's stats by as many bytes:
# the CRI-only way (usable through a proxy or the CLI) to make ListContainerStats big.
STATS_PADDING_ANNOTATION = "fake.cri-proxy.io/stats-padding-bytes"

Context = grpc.aio.ServicerContext[Any, Any]


@dataclasses.dataclass
class FakeRuntimeOptions:
    """How a fake runtime behaves; every field has the default a test usually wants."""

    api: ApiMode = "both"
    cgroup_driver: CgroupDriver = "systemd"
    # False answers GetContainerEvents with UNIMPLEMENTED, as containerd 1.6 does.
    container_events: bool = True
    preload_images: tuple[PreloadedImage, ...] = DEFAULT_IMAGES
    # Port in the Exec/Attach/PortForward URLs. Nothing listens there: the fake runtime has
    # no streaming server. 0 picks a random port number once.
    streaming_port: int = 0
    # Items per message of the v1 Stream* RPCs.
    stream_chunk_size: int = 100
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Running containers created at start (see `FakeRuntime.populate`), each with an
    # annotation of this many bytes: a node full of pods, or replies near 16 MiB.
    populate_containers: int = 0
    populate_annotation_bytes: int = 0

    def __post_init__(self) -> None:
        if self.api not in ("v1", "v1alpha2", "both"):
            raise ValueError(f"api must be v1, v1alpha2 or both, not {self.api!r}")
        if self.cgroup_driver not in ("systemd", "cgroupfs"):
            raise ValueError(
                f"cgroup_driver must be systemd or cgroupfs, not {self.cgroup_driver!r}"
            )
        if self.stream_chunk_size < 1:
            raise ValueError("stream_chunk_size must be at least 1")
        if self.streaming_port == 0:
            self.streaming_port = 30000 + secrets.randbelow(30000)


class ServicerBase:
    """State, options and the API version ("v1" or "v1alpha2") a servicer answers for."""

    def __init__(self, state: RuntimeState, options: FakeRuntimeOptions, api: str) -> None:
        self.state = state
        self.options = options
        self.api = api

    def streaming_url(self, kind: str) -> str:
        """A single-use URL on the (absent) streaming server, shaped like containerd's."""
        return f"http://127.0.0.1:{self.options.streaming_port}/{kind}/{secrets.token_urlsafe(6)}"
