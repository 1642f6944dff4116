"""The route decided by a connection's first call (`FirstCallRoute`, a `proxy.connection.Route`):
ImageService calls to their own socket, and connections whose CRI version the runtime does not
speak (or that need the proxy to answer some calls) to the translating bridge; the sockets it
chooses between are `proxy.routing.Upstreams`.

A gRPC client waits for the server's SETTINGS before it sends its first request, so the
upstream must be chosen before the request that decides it is seen. The connection starts
on the runtime socket (or the image socket when the runtime is unreachable); when the first
request belongs to the other service, the connection moves: the client's bytes so far are
replayed to the other socket (minus the SETTINGS acknowledgements meant for the first
server), that server's SETTINGS reach the client as an ordinary settings change, and its
duplicate acknowledgement and its connection window credit already granted are held back.
Everything the client sends after the decision is held by the connection, in order, and
goes out when the new socket is connected, whichever connect completes first. What is kept
for the replay is bounded (proxy.headerblock.Early: a flood before the first request gets
GOAWAY ENHANCE_YOUR_CALM), and so is what the connection holds for a socket being connected
(the client's reads pause past HIGH_WATER, as for a full write buffer).

With separate image and runtime sockets, a later call for the other service cannot be
routed on this connection. It is answered by the proxy with UNIMPLEMENTED naming both
endpoints, while its request headers still reach the upstream (then reset) so both HPACK
tables stay in step; that case forwards whole frames and decodes every request's headers
for the connection's life (a large block in a worker thread, so that other connections'
bytes are not kept waiting). Otherwise only the first request's `:path` is read, and once
the connection has settled on its socket it goes back to relaying chunks as they arrive.
The move, and the runtime's side until the connection settles, are proxy.moving's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.hpack_decoder import (
    Decoder,
    Field,
    HPACKDecodingError,
)
from cri_proxy.h2.request_path import first_request_path
from cri_proxy.h2.table_size import TableSizeLimit
from cri_proxy.model.status import StatusCode
from cri_proxy.proxy import translate
from cri_proxy.proxy.connection import Connection
from cri_proxy.proxy.headerblock import MAX_HEADER_LIST, BadFrame, Early, HeaderBlock, refuse
from cri_proxy.proxy.moving import HEADER_TYPES, Moving
from cri_proxy.proxy.routing import Upstreams

log = logging.getLogger(__name__)

# A block larger than this (encoded) is decoded in a worker thread. The decoder is pure
# Python: the GIL's switch interval (5 ms) then lets the loop serve other connections
# meanwhile; a CRI request's block is a few hundred bytes and is decoded inline.
OFF_LOOP: Final = 16 << 10
_Block = tuple[int, list[bytes], bytes]  # stream, raw frames, HPACK bytes


class FirstCallRoute(Moving):
    """A connection's upstream, decided by its first request (see the module's docstring)."""

    def __init__(self, upstreams: Upstreams) -> None:
        self.up = upstreams
        self.start_path = upstreams.runtime
        self.conn: Connection | None = None
        self.service: str | None = None  # the service this connection serves, once decided
        self.current = "runtime"  # the service whose socket the connection is on now
        # Every request's headers are decoded only where a later call may need refusing.
        self.decoder = Decoder(MAX_HEADER_LIST) if upstreams.image is not None else None
        self.limit = TableSizeLimit()  # the upstreams' SETTINGS_HEADER_TABLE_SIZE, as the client acknowledged it
        self.table_size = self.limit.allowed
        self.due: int | None = None  # the smallest limit below the initial one: the first block must shrink to it
        self.block = HeaderBlock()
        self.replay: list[bytes] | None = []  # client frames to resend if the connection moves
        self.early = Early()  # bounds the frames held in `replay`
        self.acks_to_drop = 0
        self.first_settings = 0  # SETTINGS the client had from the first server
        self.client_acks = 0  # SETTINGS acknowledgements the client sent
        self.window_credit = 0  # connection window the first server granted the client
        self.moved = False
        self.hijacked: set[int] = set()
        self.answers: list[bytes] = []  # the proxy's own answers, not yet shown to the tap
        self._stalled: list[bytes] | None = None  # client chunks that wait for a block decoded aside
        self.c2s_plain = False  # relaying chunks again (see settled())
        self.translator: translate.Translator | None = None  # every request block re-encoded
        self.batch: list[bytes] | None = None  # upstream-bound frames of one chunk, written at once

    def attach(self, conn: Connection) -> None:
        self.conn = conn
        conn.c2s = h2.FrameWalker(HEADER_TYPES | {h2.SETTINGS}, raw=True)
        conn.s2c = h2.FrameWalker(raw=True)
        conn.on_client = self.forward_client
        conn.on_upstream = self.from_upstream
        conn.injectable = self.can_inject

    def _conn(self) -> Connection:
        if self.conn is None:
            raise RuntimeError("the route was not attached to a connection")
        return self.conn

    def can_inject(self) -> bool:
        return not self._conn().server_in_block  # whole frames are forwarded: every gap is a frame boundary

    def settled(self) -> bool:
        """No more per-call routing: one socket takes every call of this connection."""
        return self.service is not None and (self.up.image is None or self.service == "bridge"
                                             or self.translator is not None)  # it refuses the other service

    async def connect(self, conn: Connection) -> bool:
        for service in ("runtime", "image") if self.up.image is not None else ("runtime",):
            self.current = service
            if await conn.connect_upstream(self.up.path_of(service)):
                return True
        return False

    # Client to upstream ------------------------------------------------------------------
    def forward_client(self, data: bytes) -> None:
        if self._stalled is not None:
            self._stalled.append(data)  # a block is being decoded aside: what follows it waits, in order
            return
        conn = self._conn()
        if not conn.preface_sent:
            conn.preface_sent = True
            self.out(h2.PREFACE, replay=True)
            data = data[len(h2.PREFACE):]
        self._frames(conn.c2s.feed(data))
        if conn.c2s.control > conn.control.allowed:
            conn.check_control()

    def _frames(self, frames: list[h2.Frame]) -> None:
        self.batch = []  # one write for the chunk's frames, not one a frame (a syscall each)
        try:
            self._route_frames(frames)
        finally:
            batch, self.batch = self.batch, None
            if batch:
                self._conn().send_upstream(b"".join(batch))

    def _route_frames(self, frames: list[h2.Frame]) -> None:
        conn = self._conn()
        for i, frame in enumerate(frames):
            try:
                aside = self.client_frame(frame)
            except (BadFrame, HPACKDecodingError) as exc:
                refuse(conn, exc)
                return
            if aside is not None:
                self._show_tap(frames[:i + 1])
                if self._stalled is None:
                    self._stalled = []
                conn.host.spawn(self._decode_aside(aside, frames[i + 1:]))
                return
        self._show_tap(frames)
        if not self.settled() or self.block or not conn.c2s.at_boundary or conn.upstream is None:
            return
        if self.translator is None:
            self.c2s_plain = True  # back to relaying chunks; the walker only learns from frame headers
            conn.c2s = conn.c2s.plain()
            conn.on_client = conn.forward_client
        elif not (self.moved and self.client_acks < self.first_settings):
            conn.c2s = h2.FrameWalker()  # runs of chunks, header blocks rewritten (proxy.requests)
            conn.on_client = self.translator.requests()

    def _show_tap(self, frames: list[h2.Frame]) -> None:
        conn = self._conn()
        if conn.tap is not None and frames:
            conn.feed_tap(True, b"".join(frame.raw or b"" for frame in frames), True)
        if self.translator is not None:
            self.translator.show_tap()
        if self.answers:  # the tap records the answers the proxy gave (they touch no HPACK table)
            answers, self.answers = b"".join(self.answers), []
            conn.feed_tap(False, answers, True)  # the tap has had whole upstream frames only

    async def _decode_aside(self, block: _Block, rest: list[h2.Frame]) -> None:
        conn = self._conn()
        stream_id, raw, fragment = block
        decoder = self.decoder
        if decoder is None:
            raise RuntimeError("a block is decoded aside only where every block is decoded")
        try:
            headers = await asyncio.to_thread(decoder.decode, fragment)
        except HPACKDecodingError as exc:
            refuse(conn, exc)
            return
        if conn.closing:
            return
        stalled, self._stalled = self._stalled or [], None
        self.request(stream_id, _path(headers), raw)
        self._frames(rest)
        if self._stalled is not None:  # `rest` held another large block: the chunks wait on
            self._stalled[:0] = stalled
        elif stalled:
            self.forward_client(b"".join(stalled))

    def out(self, raw: bytes, replay: bool = False) -> None:
        if replay and self.replay is not None:
            self.replay.append(raw)
        if self.batch is not None:
            self.batch.append(raw)
            return
        self._conn().send_upstream(raw)  # held by the connection while it moves

    def client_frame(self, frame: h2.Frame) -> _Block | None:
        """Route one client frame; a header block too large to decode here is returned."""
        raw = frame.raw or b""
        if frame.type in HEADER_TYPES:
            if not self.block.add(frame):
                return None
            stream_id, frames, fragment = self.block.take()
            if self.translator is None and self.service is None and self.up.translation is not None:
                self.translator = translate.start(self, self.up.translation, fragment)
            if self.translator is not None:
                if self.translator.block(stream_id, bool(frames[0][4] & h2.FLAG_END_STREAM), fragment):
                    self.forward_request(stream_id, frames)  # as the client sent it
                return None
            if self.settled():  # decided, and no later call is read (until the walk goes plain)
                self.forward_request(stream_id, frames)
            elif self.decoder is None:  # the first request decides, and no later one is read
                self.request(stream_id, first_request_path(fragment, self.table_size, self.due) or "", frames)
            elif len(fragment) > OFF_LOOP:
                return stream_id, frames, fragment
            else:
                self.request(stream_id, _path(self.decoder.decode(fragment)), frames)
            return None
        self.block.check(frame)
        if self.replay is not None:
            self.early.add(frame)  # held until the first request decides, so bounded
        if frame.stream_id in self.hijacked:
            if frame.type == h2.DATA and frame.length:
                self._conn().inject_to_client(h2.window_update_frame(0, frame.length))  # the upstream never sees it
            return None
        if self.translator is not None and self.translator.client_frame(frame):
            return None
        if frame.type == h2.SETTINGS:
            if frame.flags & h2.FLAG_ACK:
                self.client_acks += 1
                self.allow(self.limit.acknowledged())  # the client's encoder obeys from here on
                if self.moved and self.client_acks <= self.first_settings:
                    return None  # acknowledges the first server's settings, read after the move
                self.out(raw)  # acknowledges the current server's settings: never replayed
                return None
            if self.replay is not None:
                self.acks_to_drop += 1  # the next server acknowledges these again
        elif frame.type == h2.RST_STREAM:
            self._conn().open_streams.discard(frame.stream_id)
        self.out(raw, replay=True)
        return None

    def request(self, stream_id: int, path: str, block: list[bytes]) -> None:
        conn = self._conn()
        service = self.up.destination(path)
        if self.service is None:
            self.service = service
            if service == "bridge":
                conn.tap = None  # the bridge records these calls, with what translation did
            self.replay_and_move(service)
            self.replay = None
        if service == "bridge" and self.service != "bridge":
            service = self.up.service_of(path)
            # A connection follows its first call: a later call in another CRI version goes
            # where the connection goes, and that runtime answers it as it can.
        if service == self.service or self.settled():
            self.forward_request(stream_id, block)
            return
        self.hijacked.add(stream_id)
        block = [h2.set_flag(block[0], h2.FLAG_END_STREAM), *block[1:]]
        for raw in block + [h2.rst_stream_frame(stream_id)]:
            self.out(raw)
        here, there = self.up.path_of(self.service), self.up.path_of(service)
        message = (f"cri-proxy: {path} cannot be routed on this connection: it carries {self.service} calls to "
                   f"unix://{here}, and {service} calls go to unix://{there}; use a separate connection for each")
        log.warning("conn %d: %s", conn.id, message)
        answer = h2.grpc_error_frame(stream_id, StatusCode.UNIMPLEMENTED, message)
        conn.inject_to_client(answer)
        self.answers.append(answer)  # shown to the tap after the request it answers

    def forward_request(self, stream_id: int, block: list[bytes]) -> None:
        self._conn().open_streams.add(stream_id)
        for raw in block:
            self.out(raw)

def _path(headers: list[Field]) -> str:
    return next((value for name, value in headers if name == ":path"), "")
