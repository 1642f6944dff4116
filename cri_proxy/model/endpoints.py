"""CRI endpoints as the kubelet spells them: `unix:///run/containerd/containerd.sock`."""

from __future__ import annotations

import pathlib

from cri_proxy.model.errors import ConfigError

MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


def unix_path(endpoint: str, what: str = "endpoint") -> pathlib.Path:
    """The socket path of a `unix://` endpoint (a bare absolute path is accepted too)."""
    value = endpoint.strip()
    if value.startswith("unix://"):
        value = value[len("unix://"):]
    elif "://" in value:
        scheme = value.split("://", 1)[0]
        raise ConfigError(f"{what} {endpoint!r}: only unix:// sockets are supported, not {scheme}://")
    if not value.startswith("/"):
        raise ConfigError(f"{what} {endpoint!r}: expected unix:///absolute/path.sock")
    if len(value.encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"{what} {endpoint!r}: socket path is longer than {MAX_SOCKET_PATH} bytes")
    return pathlib.Path(value)


def as_endpoint(path: pathlib.Path) -> str:
    return f"unix://{path}"
