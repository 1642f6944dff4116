"""A stand-in container runtime: a real CRI gRPC server with in-memory pods, containers and images.

It serves runtime.v1, runtime.v1alpha2 or both on a unix socket, with the lifecycle rules
and error codes of containerd's CRI plugin, so the proxy (and users' own tests) can run
against something real without root. Exec, Attach and PortForward return URLs, but no
streaming server listens behind them. See `start_fake_runtime` and `run_fake_runtime`.
"""

from cri_proxy.fakeruntime.config import (
    STATS_PADDING_ANNOTATION,
    ApiMode,
    FakeRuntimeOptions,
)
from cri_proxy.fakeruntime.images import DEFAULT_IMAGES, PreloadedImage
from cri_proxy.fakeruntime.server import (
    FakeRuntime,
    FakeRuntimeServer,
    run_fake_runtime,
    socket_path,
    start_fake_runtime,
)
from cri_proxy.fakeruntime.state import FakeRuntimeError, RuntimeState

__all__ = [
    "DEFAULT_IMAGES",
    "STATS_PADDING_ANNOTATION",
    "ApiMode",
    "FakeRuntime",
    "FakeRuntimeError",
    "FakeRuntimeOptions",
    "FakeRuntimeServer",
    "PreloadedImage",
    "RuntimeState",
    "run_fake_runtime",
    "socket_path",
    "start_fake_runtime",
]
