"""Routing by a connection's first call: ImageService calls to their own socket, and
connections whose CRI version the runtime does not speak (or that need the proxy to answer
some calls) to the translating bridge.

A gRPC client waits for the server's SETTINGS before it sends its first request, so the
upstream must be chosen before the request that decides it is seen. The connection starts
on the runtime socket (or the image socket when the runtime is unreachable); when the first
request belongs to the other service, the connection moves: the client's bytes so far are
replayed to the other socket (minus the SETTINGS acknowledgements meant for the first
server), that server's SETTINGS reach the client as an ordinary settings change, and its
duplicate acknowledgement and its connection window credit already granted are held back.

With separate image and runtime sockets, a later call for the other service cannot be
routed on this connection. It is answered by the proxy with UNIMPLEMENTED naming both
endpoints, while its request headers still reach the upstream (then reset) so both HPACK
tables stay in step; that case forwards whole frames and reads every request's headers for
the connection's life. Otherwise, once the first call has chosen the socket and the
connection has settled there, it goes back to relaying chunks as they arrive.
"""

from __future__ import annotations

import logging

from hpack import Decoder, HPACKError

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.connection import HEADER_TYPES, Connection

log = logging.getLogger(__name__)

IMAGE_PREFIXES = ("/runtime.v1.ImageService/", "/runtime.v1alpha2.ImageService/")
UNIMPLEMENTED = 12
MAX_HEADER_LIST = 16 << 20


def service_of(path: str) -> str:
    return "image" if path.startswith(IMAGE_PREFIXES) else "runtime"


class SplitConnection(Connection):
    """A connection whose upstream is decided by its first request's service."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.service: str | None = None  # the service this connection serves, once decided
        self.current = "runtime"  # the service whose socket the connection is on now
        self.hpack = Decoder(max_header_list_size=MAX_HEADER_LIST)
        self.block: list[bytes] = []  # raw frames of the request header block being read
        self.replay: list[bytes] | None = []  # client frames to resend if the connection moves
        self.acks_to_drop = 0
        self.window_credit = 0  # connection window the first server granted the client
        self.moved = False
        self.hijacked: set[int] = set()
        self._backlog_frames: list[bytes] = []  # frames parsed while the connection moves
        self.answers: list[bytes] = []  # the proxy's own answers, not yet shown to the tap
        self.c2s_plain = False  # relaying chunks again (see settled())
        self.s2c_plain = False

    def client_keep(self) -> frozenset[int]:
        return HEADER_TYPES | {h2.SETTINGS}

    def frame_wise(self) -> bool:
        return True

    def can_inject(self) -> bool:
        if self.s2c_plain:
            return super().can_inject()
        return not self._in_block  # whole frames are forwarded: every gap is a frame boundary

    def path_of(self, service: str) -> object:
        if service == "bridge" and self.server.bridge is not None:
            return self.server.bridge.path
        return self.server.image_path if service == "image" else self.server.runtime_path

    def destination(self, path: str) -> str:
        """Where a connection whose first call is `path` belongs: runtime, image or bridge."""
        bridge = self.server.bridge
        if bridge is not None and bridge.needs(path):
            return "bridge"
        return service_of(path) if self.server.image_path is not None else "runtime"

    def settled(self) -> bool:
        """No more per-call routing: one socket takes every call of this connection."""
        return self.service is not None and (self.server.image_path is None or self.service == "bridge")

    async def start_upstream(self) -> None:
        for service in ("runtime", "image") if self.server.image_path is not None else ("runtime",):
            self.current = service
            if await self.connect_upstream(self.path_of(service)):  # type: ignore[arg-type]
                return
        self.close(abort=True)

    # Client to upstream ------------------------------------------------------------------
    def forward_client(self, data: bytes) -> None:
        if self.c2s_plain:
            super().forward_client(data)
            return
        if not self._preface_sent:
            self._preface_sent = True
            self.out(h2.PREFACE, replay=True)
            data = data[len(h2.PREFACE):]
        frames = self.c2s.feed(data)
        for frame in frames:
            try:
                self.client_frame(frame)
            except (h2.FrameError, HPACKError) as exc:
                log.warning("conn %d: cannot read the client's request headers (%s); closing the connection",
                            self.id, exc)
                self.close(abort=True)
                return
        if self.tap is not None and frames:
            self.feed_tap(True, b"".join(frame.raw or b"" for frame in frames), True)
        if self.answers:  # the tap records the answers the proxy gave (they touch no HPACK table)
            answers, self.answers = b"".join(self.answers), []
            self.feed_tap(False, answers, True)  # the tap has had whole upstream frames only
        if self.settled() and not self.block and self.c2s.at_boundary and self.upstream is not None:
            self.c2s_plain = True  # back to relaying chunks; the walker only learns from frame headers
            self.c2s = h2.FrameWalker()

    def out(self, raw: bytes, replay: bool = False) -> None:
        if replay and self.replay is not None:
            self.replay.append(raw)
        if self.upstream is None:
            self._backlog_frames.append(raw)
        else:
            self.send_upstream(raw)

    def client_frame(self, frame: h2.Frame) -> None:
        raw = frame.raw or b""
        if frame.type in HEADER_TYPES:
            self.block.append(raw)
            if frame.flags & h2.FLAG_END_HEADERS:
                fragment = b"".join(h2.header_block_fragment(h2.Frame(f[3], f[4], frame.stream_id, len(f) - 9, f[9:]))
                                    for f in self.block)
                headers = dict(self.hpack.decode(fragment, raw=True))
                block, self.block = self.block, []
                self.request(frame.stream_id, headers.get(b":path", b"").decode("latin-1"), block)
            return
        if frame.stream_id in self.hijacked:
            if frame.type == h2.DATA and frame.length:
                self.inject_to_client(h2.window_update_frame(0, frame.length))  # the upstream never sees it
            return
        if frame.type == h2.SETTINGS:
            if frame.flags & h2.FLAG_ACK:
                self.out(raw)  # acknowledges the current server's settings: never replayed
                return
            if self.replay is not None:
                self.acks_to_drop += 1  # the next server acknowledges these again
        elif frame.type == h2.RST_STREAM:
            self.open_streams.discard(frame.stream_id)
        self.out(raw, replay=True)

    def request(self, stream_id: int, path: str, block: list[bytes]) -> None:
        service = self.destination(path)
        if self.service is None:
            self.service = service
            if service == "bridge":
                self.tap = None  # the bridge records these calls, with what translation did
            self.replay_and_move(service, block)
            self.replay = None
        if service == "bridge" and self.service != "bridge":
            service = service_of(path) if self.server.image_path is not None else "runtime"
            # A connection follows its first call: a later call in another CRI version goes
            # where the connection goes, and that runtime answers it as it can.
        if service == self.service or self.settled():
            self.open_streams.add(stream_id)
            for raw in block:
                self.out(raw)
            return
        self.hijacked.add(stream_id)
        block = [h2.set_flag(block[0], h2.FLAG_END_STREAM), *block[1:]]
        for raw in block + [h2.rst_stream_frame(stream_id)]:
            self.out(raw)
        here, there = self.path_of(self.service), self.path_of(service)
        message = (f"cri-proxy: {path} cannot be routed on this connection: it carries {self.service} calls to "
                   f"unix://{here}, and {service} calls go to unix://{there}; use a separate connection for each")
        log.warning("conn %d: %s", self.id, message)
        answer = h2.grpc_error_frame(stream_id, UNIMPLEMENTED, message)
        self.inject_to_client(answer)
        self.answers.append(answer)  # shown to the tap after the request it answers

    def replay_and_move(self, service: str, block: list[bytes]) -> None:
        if service == self.current:
            return
        log.debug("conn %d: first call is for the %s service: moving to unix://%s",
                  self.id, service, self.path_of(service))
        old = self.upstream
        self.upstream = None
        if old is not None and old.transport is not None:
            old.transport.close()
        self.current = service
        self.moved = True
        first = b"".join(self.replay or [])
        self.server.spawn(self._move(service, first))

    async def _move(self, service: str, replayed: bytes) -> None:
        # Runs after the frame that moved the connection and the rest of its chunk were read.
        first = replayed + b"".join(self._backlog_frames)
        self._backlog_frames = []
        if service == "bridge" and self.server.bridge is not None:
            try:
                await self.server.bridge.ready()
            except Exception:
                log.exception("conn %d: the bridge could not start; closing the connection", self.id)
                self.close(abort=True)
                return
        if not await self.connect_upstream(self.path_of(service), first):  # type: ignore[arg-type]
            self.close(abort=True)
            return
        if self.tap is not None:
            self.tap.upstream_changed(f"unix://{self.upstream_path}")

    # Upstream to client ------------------------------------------------------------------
    def from_upstream(self, end: object, data: bytes) -> None:
        if self.s2c_plain:
            super().from_upstream(end, data)  # type: ignore[arg-type]
            return
        if end is not self.upstream:
            return
        frames = self.s2c.feed(data)
        out = [raw for raw in map(self.server_frame, frames) if raw]
        self.send_client(b"".join(out))
        self.after_upstream_frames(frames)
        if (self.settled() and self.c2s_plain and self.s2c.at_boundary and not self._in_block
                and not (self.moved and (self.acks_to_drop or self.window_credit))):
            self.s2c_plain = True  # nothing of the upstream's left to hold back
            self.s2c = h2.FrameWalker()

    def server_frame(self, frame: h2.Frame) -> bytes:
        raw = frame.raw or b""
        if frame.type == h2.SETTINGS:
            if frame.flags & h2.FLAG_ACK:
                if self.moved and self.acks_to_drop:
                    self.acks_to_drop -= 1
                    return b""  # the client already had this acknowledgement from the first server
            else:
                table = h2.settings_values(raw[9:]).get(h2.SETTINGS_HEADER_TABLE_SIZE)
                if table is not None:
                    self.hpack.max_allowed_table_size = table
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
                self.send_upstream(h2.window_update_frame(0, frame.length))  # the client never sees it
            return b""
        return raw
