"""What a translating connection's parts need of each other, as protocols: the route
(proxy.firstcall.FirstCallRoute) as the translator sees it, and the translator
(proxy.translate.Translator) as the request relay sees it.

Routing creates the translator, and the translator and the request relay drive the route
back; naming these sides by protocol keeps the imports one way (routing -> translate ->
requests -> seams) instead of a circle of type-only imports.
"""

from __future__ import annotations

import pathlib
from typing import Any, Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.table_size import TableSizeLimit
from cri_proxy.proxy.connection import Connection


class UpstreamPaths(Protocol):
    """Which upstream serves a path, and where it listens (proxy.routing.Upstreams)."""

    def service_of(self, path: str) -> str: ...

    def path_of(self, service: str) -> pathlib.Path: ...

    def destination(self, path: str) -> str: ...


class TranslatedRoute(Protocol):
    """The route of a translating connection, as the translator and the request relay use it."""

    service: str | None  # the upstream this connection serves, once decided
    replay: list[bytes] | None  # client frames to resend if the connection moves
    hijacked: set[int]  # streams the proxy answered itself: nothing more of them goes on
    answers: list[bytes]  # the proxy's own answers, not yet shown to the tap
    batch: list[bytes] | None  # upstream-bound frames of one chunk, written at once
    table_size: int
    limit: TableSizeLimit

    @property
    def up(self) -> UpstreamPaths: ...

    def _conn(self) -> Connection: ...

    def out(self, raw: bytes, replay: bool = False) -> None: ...

    def forward_request(self, stream_id: int, block: list[bytes]) -> None: ...

    def replay_and_move(self, service: str) -> None: ...


class RequestTranslator(Protocol):
    """The translator, as the request relay hands it the client's frames."""

    checking: dict[int, Any]  # streams whose completing DATA frame is held for a body check
    owed: int  # DATA bytes the proxy answered with, kept from the runtime's next credit
    held: dict[int, Any]  # streams whose DATA a fault rule's delay holds (proxy.faultwire)
    rewriting: bool  # every block is re-encoded towards the runtime
    # blocks rewritten leaving both tables as they were: what each became (when not rewriting,
    # itself), and its call (None when there is nothing to decide: the request relay swaps or
    # passes those itself)
    rewritten: dict[bytes, tuple[bytes, Any]]
    swapping: bool  # some of `rewritten` have nothing to decide
    last_stream: int  # the highest stream a request block opened

    def block(self, stream_id: int, end_stream: bool, fragment: bytes) -> bool: ...

    def send_as_sent(self, stream_id: int, end_stream: bool, fragment: bytes) -> None: ...

    def client_frame(self, frame: h2.Frame) -> bool: ...

    def show_tap(self) -> None: ...
