"""Routing as a strategy of a connection: one socket (`DirectRoute`), or decided by the
connection's first call (`proxy.firstcall.FirstCallRoute`): ImageService calls to their own
socket, and connections whose CRI version the runtime does not speak (or that need the proxy
to answer some calls) to the translating bridge. This module holds what a route is given:
the sockets to choose between (`Upstreams`) and the bridge (`BridgeRoute`).
"""

from __future__ import annotations

import pathlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cri_proxy.model.cri import parse_path
from cri_proxy.proxy import translate
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.prober import VersionProber


@dataclass(frozen=True)
class BridgeRoute:
    """Where the translating bridge listens, and which connections it takes.

    `needs(path)`: whether a connection whose first call is `path` goes to the bridge.
    `ready()`: start it if it is not serving yet (it is started on first need).
    """

    path: pathlib.Path
    needs: Callable[[str], bool]
    ready: Callable[[], Awaitable[None]]  # awaited before a connection is moved to the bridge


@dataclass(frozen=True)
class Upstreams:
    """The sockets a first-call route chooses between, and what the runtime speaks."""

    runtime: pathlib.Path
    image: pathlib.Path | None = None
    bridge: BridgeRoute | None = None
    versions: VersionProber | None = None
    translation: translate.TranslationPolicy | None = None  # CRI translation in the relay (proxy.translate)

    def path_of(self, service: str) -> pathlib.Path:
        if service == "bridge" and self.bridge is not None:
            return self.bridge.path
        return self.image if service == "image" and self.image is not None else self.runtime

    def service_of(self, path: str) -> str:
        """The socket `path`'s service has: image or runtime."""
        return "image" if self.image is not None and parse_path(path).is_image else "runtime"

    def destination(self, path: str) -> str:
        """Where a connection whose first call is `path` belongs: runtime, image or bridge."""
        if self.bridge is not None and self.bridge.needs(path):
            return "bridge"
        return self.service_of(path)


class DirectRoute:
    """Every call to one socket: the plain relay, nothing to decide."""

    def __init__(self, path: pathlib.Path) -> None:
        self.start_path = path

    def attach(self, conn: Connection) -> None:
        pass

    async def connect(self, conn: Connection) -> bool:
        return await conn.connect_upstream(self.start_path)
