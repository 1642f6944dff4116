"""The runtime's side of a first-call route (proxy.firstcall.FirstCallRoute) until it settles,
and the move to another socket its first call may ask for.

When a connection's first call belongs to the other service (or to the bridge), the client's
bytes so far are replayed to the other socket; the first server's SETTINGS already reached
the client, so the new server's reach it as an ordinary settings change, and what would be
said twice is held back: the new server's acknowledgement of SETTINGS the first server
already acknowledged, and the connection window credit the first server had granted. Until
the connection settles, the runtime's frames are walked whole for that, and for its
SETTINGS_HEADER_TABLE_SIZE, which bounds the client's HPACK encoder (and the proxy's own
towards the runtime, when it translates); then the runtime's chunks go on as they come
(proxy.connection, or proxy.responses when translating).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.hpack_decoder import DEFAULT_TABLE_SIZE, Decoder
from cri_proxy.h2.table_size import TableSizeLimit
from cri_proxy.proxy import translate
from cri_proxy.proxy.connection import Connection, End
from cri_proxy.proxy.peer import bridge_address
from cri_proxy.proxy.routing import Upstreams

log = logging.getLogger(__name__)

HEADER_TYPES: Final = frozenset({h2.HEADERS, h2.CONTINUATION})


class Moving:
    """The moving and upstream part of a first-call route (FirstCallRoute sets what it names)."""

    up: Upstreams
    current: str
    service: str | None
    moved: bool
    batch: list[bytes] | None
    replay: list[bytes] | None
    acks_to_drop: int
    first_settings: int
    window_credit: int
    hijacked: set[int]
    c2s_plain: bool
    translator: translate.Translator | None
    decoder: Decoder | None
    limit: TableSizeLimit
    table_size: int
    due: int | None
    _conn: Callable[[], Connection]
    settled: Callable[[], bool]

    def replay_and_move(self, service: str) -> None:
        if service == self.current:
            return
        conn = self._conn()
        log.debug("conn %d: first call is for the %s service: moving to unix://%s",
                  conn.id, service, self.up.path_of(service))
        self.current = service
        self.moved = True
        if self.batch:  # what the first socket was sent before the move: it is in the replay too
            conn.send_upstream(b"".join(self.batch))
            self.batch.clear()
        conn.leave_upstream(b"".join(self.replay or []))  # the rest of the client's bytes queue behind
        conn.host.spawn(self._move(service))

    async def _move(self, service: str) -> None:
        conn = self._conn()
        if service == "bridge" and self.up.bridge is not None:
            try:
                await self.up.bridge.ready()
            except Exception:
                log.exception("conn %d: the bridge could not start; closing the connection", conn.id)
                conn.close(abort=True)
                return
        bind = bridge_address(conn.id) if service == "bridge" else None  # the bridge records who the client is
        if not await conn.connect_upstream(self.up.path_of(service), bind):
            conn.close(abort=True)
            return
        if conn.tap is not None:
            conn.tap.upstream_changed(f"unix://{conn.upstream_path}")

    # Upstream to client ------------------------------------------------------------------
    def from_upstream(self, end: End, data: bytes) -> None:
        conn = self._conn()
        if end is not conn.upstream:
            return
        frames = conn.s2c.feed(data)
        out = [raw for raw in map(self.server_frame, frames) if raw]
        conn.send_client(b"".join(out))
        self._after_upstream_frames(frames)
        if (self.settled() and (self.c2s_plain or self.translator is not None)
                and not conn.server_in_block and not (self.moved and (self.acks_to_drop or self.window_credit))):
            # Nothing of the upstream's left to hold back. A frame the chunk cut is not sent yet:
            # it goes through the new handler from its start (with 1 MB replies on many streams a
            # chunk may never end at a frame boundary, and every frame would be copied meanwhile).
            carried = conn.s2c.carried()
            conn.s2c = conn.s2c.plain()
            if self.translator is not None:  # chunks again, minus what translation leaves out
                conn.on_upstream, conn.injectable = self.translator.responses()
            else:
                conn.on_upstream = conn.from_upstream
                conn.injectable = conn.can_inject
            if carried:
                conn.on_upstream(end, carried)

    def _after_upstream_frames(self, frames: list[h2.Frame]) -> None:
        """The bookkeeping Connection.from_upstream does with `track`, for whole frames."""
        conn = self._conn()
        for frame in frames:
            if frame.type in (h2.HEADERS, h2.DATA) and frame.flags & h2.FLAG_END_STREAM or frame.type == h2.RST_STREAM:
                conn.open_streams.discard(frame.stream_id)
            if frame.type == h2.HEADERS:
                conn.server_in_block = not frame.flags & h2.FLAG_END_HEADERS
            elif frame.type == h2.CONTINUATION and frame.flags & h2.FLAG_END_HEADERS:
                conn.server_in_block = False
        if conn.tap is not None and frames:
            conn.feed_tap(False, b"".join(f.raw or b"" for f in frames), True)
        conn.flush_inject()
        conn.close_if_drained()

    def allow(self, table_size: int) -> None:
        """The client's HPACK encoder may now use up to `table_size` bytes (RFC 7541 §4.2)."""
        self.table_size = table_size
        if self.translator is not None:
            self.translator.client_table_allowed(table_size)  # its decoder insists on the size update
        if self.decoder is not None:
            self.decoder.max_allowed_table_size = table_size  # it insists on the size update itself
        elif table_size < DEFAULT_TABLE_SIZE:
            self.due = table_size if self.due is None else min(self.due, table_size)

    def server_frame(self, frame: h2.Frame) -> bytes:
        raw = frame.raw or b""
        if frame.type == h2.SETTINGS:
            if frame.flags & h2.FLAG_ACK:
                if self.moved and self.acks_to_drop:
                    self.acks_to_drop -= 1
                    return b""  # the client already had this acknowledgement from the first server
            else:
                if not self.moved:
                    self.first_settings += 1  # the client acknowledges these first, in order
                table = h2.settings_values(raw[9:]).get(h2.SETTINGS_HEADER_TABLE_SIZE)
                if table is not None and self.translator is not None:
                    self.translator.runtime_table(table)
                self.allow(self.limit.sent(table))
        elif frame.type == h2.WINDOW_UPDATE and frame.stream_id == 0:
            increment = int.from_bytes(raw[9:13], "big") & 0x7FFFFFFF
            if self.service is None:
                self.window_credit += increment
            elif self.window_credit:
                held = min(increment, self.window_credit)
                self.window_credit -= held
                return h2.window_update_frame(0, increment - held) if increment > held else b""
        elif frame.stream_id in self.hijacked and frame.type not in HEADER_TYPES:
            if frame.type == h2.DATA and frame.length:
                self._conn().send_upstream(h2.window_update_frame(0, frame.length))  # the client never sees it
            return b""
        elif frame.type == h2.DATA and self.translator is not None and self.translator.bodies is not None:
            self.translator.bodies.reply(frame.stream_id, frame.flags, raw[9:])  # an answer read for pod facts
        return raw
