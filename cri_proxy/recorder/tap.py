"""The recorder's tap: rebuilds each gRPC call from the frames the relay has forwarded.

The relay hands the bytes of a connection, in order per direction, after forwarding them;
the tap walks them frame by frame (`walk.TapWalker`, one per direction), reading each frame
where it lies in the chunk. Header blocks (HEADERS + CONTINUATION) are decoded with one HPACK
decoder per direction, whose state must follow every block in order; DATA is cut into gRPC
messages (`opencall.OpenCall`); the end of a call (END_STREAM from the server, RST_STREAM
from either side, the connection closing) hands a `RecordedCall` to the sink, exactly once.
`client_frames`/`server_frames` take frames the relay's `h2.FrameWalker` cut, the same way.
What the header blocks open and end is recorder.tapcalls (`CallBook`, the base class here).

It never raises into the relay. What it cannot follow is recorded as such: a call whose
frames it cannot read is UNPARSED, with a note. HPACK cannot resynchronise, so once a
direction's block fails to decode (or bytes of it never reached the tap: `gap`), every later
call on that connection is UNPARSED too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cri_proxy.h2 import frames as h2
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.h2 import hpack_decoder as hpack_fast
from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.sink import CallSink
from cri_proxy.recorder.opencall import OpenCall
from cri_proxy.recorder.sides import MAX_HEADER_LIST, HeaderDecoder, ReferenceDecoder, Side
from cri_proxy.recorder.tapcalls import CallBook
from cri_proxy.recorder.walk import READ_TYPES, TapWalker
from cri_proxy.recorder.headers import header_text
from cri_proxy.recorder.wire import LastBodies, data_content, error_name

__all__ = ["ConnectionRecorder", "RecordingTap", "ReferenceDecoder", "fast_decoder"]

log = logging.getLogger(__name__)

SHARE_MAX_BYTES = 4 << 20  # the bodies RecordingTap.bodies keeps, all kinds together
THINNED = "the recorder fell behind (the relay left them out)"  # a MessageReader's `stopped`
_DATA, _HEADERS, _CONTINUATION = h2.DATA, h2.HEADERS, h2.CONTINUATION
_PADDED, _END_STREAM, _END_HEADERS = h2.FLAG_PADDED, h2.FLAG_END_STREAM, h2.FLAG_END_HEADERS
_PADDED_OR_PRIORITY = h2.FLAG_PADDED | h2.FLAG_PRIORITY


def fast_decoder() -> HeaderDecoder:
    return hpack_fast.Decoder(MAX_HEADER_LIST, header_text)


class RecordingTap:
    """A `Tap` that records every call it sees into `sink`."""

    def __init__(self, sink: CallSink, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 decoder: Callable[[], HeaderDecoder] = fast_decoder, lean: bool = False) -> None:
        self.sink = sink
        # The server's bytes come in the relay's lean form (proxy.lean): each DATA frame's payload
        # is a summary of its messages (link.lean_data), counted into the call's byte totals.
        # Nothing reads bodies or response metadata then (metrics only): the client's messages
        # are counted, not kept (OpenCall.counted), and response headers and trailers give the
        # call its status and notes only.
        self.lean = lean
        self.clock = clock  # wall clock, for started_at
        self.timer = timer  # monotonic, for durations and offsets
        self.decoder = decoder
        decoder()  # builds the decoder's tables now, not inside the first call it records
        # While `skimming`, calls that start are followed (HPACK, status, end) without their
        # messages and handed to `on_skimmed` instead of the sink: for a recorder that has
        # fallen behind and must catch up without losing its place in the byte stream.
        self.skimming = False
        self.on_skimmed: Callable[[RecordedCall], None] | None = None

        # The last large body of each kind: calls waiting for the writer share one copy of a
        # repeated reply (wire.share_bodies).
        self.bodies = LastBodies(SHARE_MAX_BYTES)

    def open(self, info: ConnectionInfo) -> ConnectionRecorder:
        return ConnectionRecorder(self, info)


class ConnectionRecorder(CallBook):
    """The tap of one relayed connection (a `ConnectionTap`)."""

    tap: RecordingTap

    def __init__(self, tap: RecordingTap, info: ConnectionInfo) -> None:
        self.tap = tap
        self.info = info
        self.upstream = info.upstream
        self.calls: dict[int, OpenCall] = {}
        self.client = Side("client", tap.decoder())
        self.server = Side("server", tap.decoder())
        self.walkers = {True: self._walker(True), False: self._walker(False)}
        self._lean = tap.lean
        self._warned = False
        self._sink_warned = False
        self._bug_logged = False
        self._now = 0.0
        self._translated: tuple[str | None, list[str]] | None = None  # call_noted(0, ...): every later call
        self.thinned = {True: False, False: False}  # per direction: DATA left out by the relay (thin)

    def _walker(self, from_client: bool) -> TapWalker:
        if from_client:
            return TapWalker(self.client, self.server, self._dispatch, self._data, self._block, self._failed)
        return TapWalker(self.server, self.client, self._dispatch, self._data, self._block, self._failed)

    # The ConnectionTap seam ------------------------------------------------------------
    def client_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._now = self.tap.timer()
        self.walkers[True].feed(data if type(data) is bytes else bytes(data))

    def server_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._now = self.tap.timer()
        self.walkers[False].feed(data if type(data) is bytes else bytes(data))

    def feed(self, from_client: bool, data: bytes | memoryview) -> None:
        """`client_bytes`/`server_bytes` for a view of memory that never changes (the spool's)."""
        self._now = self.tap.timer()
        self.walkers[from_client].feed(data)

    def gap(self, from_client: bool, now: float | None = None, why: str = "it fell behind") -> None:
        """Bytes of one direction never reached the tap; the next ones begin a frame.

        The calls open now are recorded as unparsed, without the messages of this direction
        from here on, and so is every later one on this connection: the lost bytes may have
        changed the HPACK state (such calls have no path, so redaction keeps none of their
        message bytes).
        """
        side = self.client if from_client else self.server
        self.thinned[from_client] = False
        self.walkers[from_client] = self._walker(from_client)
        self._now = self.tap.timer() if now is None else now
        side.end_block()
        self._lose(side, f"bytes of this connection never reached the recorder ({why})")
        for call in self.calls.values():
            call.unparsed = True
            call.reader(from_client, self.tap.bodies).stop("a gap in the bytes")

    def thin(self, from_client: bool, on: bool, now: float) -> None:
        """From here one direction's frames come without DATA (`on`; proxy.recorder_out, for a
        recorder that fell behind) or whole again. Every header block still arrives, so the
        HPACK state stays in step. Each DATA frame left out comes as an empty PADDED one (a
        frame no peer sends: PADDED needs a pad length), so the calls it belonged to are known
        and recorded without that direction's messages from there on; the others are whole."""
        self._now = now
        self.thinned[from_client] = on

    def client_frames(self, frames: list[h2.Frame]) -> None:
        self._guarded(self.client, self.server, frames)

    def server_frames(self, frames: list[h2.Frame]) -> None:
        self._guarded(self.server, self.client, frames)

    def upstream_changed(self, upstream: str) -> None:
        # proxy.firstcall moves a connection while its first call is open: that call went there too.
        self.upstream = upstream
        for call in self.calls.values():
            call.rec.upstream = upstream

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        """What the relay's translation did (proxy.translate); stream 0: every later call."""
        if stream_id == 0:
            self._translated = (upstream_api, notes)
            return
        call = self.calls.get(stream_id)
        if call is not None:
            if upstream_api is not None:
                call.rec.upstream_api = upstream_api
            call.rec.notes.extend(notes)

    def closed(self, reason: str | None) -> None:
        try:
            self._now = self.tap.timer()
            why = "closed" if reason is None else f"lost: {reason}"
            for stream_id in list(self.calls):
                call = self.calls[stream_id]
                self._end(stream_id, Outcome.CONNECTION_CLOSED,
                          f"connection {why} {self._now - call.t0:.3f}s into the call")
        except Exception:
            log.exception("conn %d: the tap failed while closing", self.info.conn_id)

    # Frames ----------------------------------------------------------------------------
    def _guarded(self, side: Side, other: Side, frames: list[h2.Frame]) -> None:
        if not frames:
            return
        self._now = self.tap.timer()
        for frame in frames:
            try:
                self._frame(side, other, frame)
            except Exception:
                self._failed(side, frame.type, frame.stream_id)

    def _failed(self, side: Side, kind: int, stream_id: int) -> None:
        """A bug (or a frame no relay makes): go on, with everything from here unparsed."""
        if not self._bug_logged:
            self._bug_logged = True
            log.exception("conn %d: the tap failed on a %s frame (type %d, stream %d); this connection's calls "
                          "are recorded as unparsed from now on", self.info.conn_id, side.name, kind, stream_id)
        for s in (self.client, self.server):
            s.lost = s.lost or "the tap failed on a frame (see the log)"
            s.end_block()
        for call in self.calls.values():
            call.unparsed = True

    def _dispatch(self, side: Side, other: Side, kind: int, flags: int, stream_id: int, data: bytes | memoryview,
                  start: int, stop: int) -> None:
        """A frame from the walk (walk.TapWalker), its payload `data[start:stop]`; the two
        kinds of nearly every frame read where they lie, the others as `h2.Frame`s."""
        if side.in_block and kind != _CONTINUATION:
            self._interrupted(side, kind)
        if kind == _DATA and not flags & _PADDED:
            self._data(side, stream_id, flags, data, start, stop)
        elif kind == _HEADERS and flags & _END_HEADERS and not flags & _PADDED_OR_PRIORITY:
            self._block(side, stream_id, flags, bytes(data[start:stop]))
        else:
            self._frame(side, other, h2.Frame(kind, flags, stream_id, stop - start,
                                              bytes(data[start:stop]) if kind in READ_TYPES else None))

    def _interrupted(self, side: Side, kind: int) -> None:
        side.end_block()
        self._lose(side, f"a header block was interrupted by a frame of type {kind}")
        if side is self.client:
            self._request(side.block_stream, None)

    def _frame(self, side: Side, other: Side, frame: h2.Frame) -> None:
        kind = frame.type
        if side.in_block and kind != h2.CONTINUATION:
            self._interrupted(side, kind)
        if kind == h2.DATA:
            self._data_frame(side, frame)
        elif kind == h2.HEADERS:
            if (block := side.headers(frame)) is not None:
                self._header_block(side, block)
        elif kind == h2.CONTINUATION:
            if not side.in_block or frame.stream_id != side.block_stream:
                self._lose(side, f"CONTINUATION on stream {frame.stream_id} outside a header block")
            elif (block := side.continuation(frame)) is not None:
                self._header_block(side, block)
        elif kind == h2.RST_STREAM:
            code = int.from_bytes((frame.payload or b"")[:4], "big")
            self._end(frame.stream_id, Outcome.CANCELLED, f"{side.name} reset the stream: {error_name(code)}")
        elif kind == h2.SETTINGS:
            self._settings(side, other, frame)
        elif kind == h2.GOAWAY:
            payload = frame.payload or b""
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            note = f"{side.name} sent GOAWAY: last stream {last}, {error_name(int.from_bytes(payload[4:8], 'big'))}"
            if payload[8:]:
                note += f", {payload[8:200]!r}"
            for call in self.calls.values():
                call.rec.notes.append(note)
        elif kind == 0x5:  # PUSH_PROMISE: gRPC never pushes; its header block is not followed
            self._lose(side, "PUSH_PROMISE (server push) is not followed")

    # DATA ------------------------------------------------------------------------------
    def _data(self, side: Side, stream_id: int, flags: int, data: bytes | memoryview, start: int, stop: int) -> None:
        """A DATA frame without padding, or a piece of one: its content is `data[start:stop]`."""
        call = self.calls.get(stream_id)
        if call is None:
            return
        if call.skimmed:
            pass
        elif self._lean and side is self.server:
            if not call.lean(data, start, stop):
                self._unreadable(call, side)
        elif stop > start and not (self._lean and call.counted(data, start, stop)):
            call.messages(side is self.client, data, start, stop, self._now - call.t0, self.tap.bodies)
        if side is self.server and flags & _END_STREAM:
            self._end(stream_id, Outcome.COMPLETED, "the server ended the stream without trailers")

    def _data_frame(self, side: Side, frame: h2.Frame) -> None:
        """A DATA frame as an `h2.Frame`: padded, or from `client_frames`/`server_frames`."""
        call = self.calls.get(frame.stream_id)
        if call is None:
            return
        content: bytes | memoryview | None
        if not frame.length and frame.flags & h2.FLAG_PADDED and self.thinned[side is self.client]:
            call.reader(side is self.client, self.tap.bodies).stop(THINNED)  # the relay left it out
            content = b""
        elif self.tap.lean and side is self.server:
            content = b"" if call.skimmed or call.lean(frame.payload or b"") else None
        else:
            content = data_content(frame) if not call.skimmed else b""
        if content is None:
            self._unreadable(call, side)
        elif content:
            call.messages(side is self.client, content, 0, len(content), self._now - call.t0, self.tap.bodies)
        if side is self.server and frame.flags & h2.FLAG_END_STREAM:
            self._end(frame.stream_id, Outcome.COMPLETED, "the server ended the stream without trailers")

    def _settings(self, side: Side, other: Side, frame: h2.Frame) -> None:
        # A side's SETTINGS_HEADER_TABLE_SIZE bounds the other side's encoder; the other side
        # acknowledges it in its own direction.
        if frame.flags & h2.FLAG_ACK:
            side.acknowledged()
            return
        other.peer_allows(h2.settings_values(frame.payload or b"").get(h2.SETTINGS_HEADER_TABLE_SIZE))
