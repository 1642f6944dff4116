"""The recorder's tap: rebuilds each gRPC call from the frames the relay has forwarded.

The relay hands the bytes of a connection, in order per direction, after forwarding them;
the tap splits them into frames (a `FrameWalker` per direction). Header blocks (HEADERS +
CONTINUATION) are decoded with one HPACK decoder per direction, whose state must follow
every block in order; DATA is cut into gRPC messages; the end of a
call (END_STREAM from the server, RST_STREAM from either side, the connection closing) hands
a `RecordedCall` to the sink, exactly once.

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
from cri_proxy.model.call import Direction, Metadata, Outcome, RecordedCall
from cri_proxy.model.cri import parse_path
from cri_proxy.model.link import LEAN_SUMMARY, read_lean_data
from cri_proxy.model.sink import CallSink
from cri_proxy.recorder.sides import MAX_HEADER_LIST, HeaderDecoder, Side
from cri_proxy.recorder.wire import (LastBodies, MessageReader, apply_status, cap_metadata, data_content, error_name,
                                     header_text, share_bodies)

log = logging.getLogger(__name__)

# The frame types whose payload the tap reads (PING, WINDOW_UPDATE, PRIORITY and unknown
# types are walked over without copying theirs).
READ_TYPES = frozenset({h2.DATA, h2.HEADERS, h2.RST_STREAM, h2.SETTINGS, 0x5, h2.GOAWAY, h2.CONTINUATION})
SHARE_MAX_BYTES = 4 << 20  # the bodies RecordingTap.bodies keeps, all kinds together


def fast_decoder() -> HeaderDecoder:
    return hpack_fast.Decoder(MAX_HEADER_LIST, header_text)


class ReferenceDecoder:
    """`hpack.Decoder` (the python-hyper reference), for comparison and benchmarks."""

    def __init__(self) -> None:
        from hpack import Decoder

        self._decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)

    @property
    def max_allowed_table_size(self) -> int:
        return int(self._decoder.max_allowed_table_size)

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._decoder.max_allowed_table_size = value

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        fields = []
        for raw_name, raw_value in self._decoder.decode(data, raw=True):
            name = header_text(bytes(raw_name), None)
            fields.append((name, header_text(bytes(raw_value), name)))
        return fields


class RecordingTap:
    """A `Tap` that records every call it sees into `sink`."""

    def __init__(self, sink: CallSink, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 decoder: Callable[[], HeaderDecoder] = fast_decoder, lean: bool = False) -> None:
        self.sink = sink
        # The server's bytes come in the relay's lean form (proxy.lean): each DATA frame's payload
        # is a summary of its messages (link.lean_data), counted into the call's byte totals.
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
        # Told of each call as its request headers arrive (the metrics peer's calls in flight).
        self.on_opened: Callable[[RecordedCall], None] | None = None

        # The last large body of each kind: calls waiting for the writer share one copy of a
        # repeated reply (wire.share_bodies).
        self.bodies = LastBodies(SHARE_MAX_BYTES)

    def open(self, info: ConnectionInfo) -> ConnectionRecorder:
        return ConnectionRecorder(self, info)


class _Call:
    __slots__ = ("rec", "t0", "request", "response", "answered", "unparsed", "skimmed")

    def __init__(self, rec: RecordedCall, t0: float, skimmed: bool = False, bodies: LastBodies | None = None) -> None:
        self.rec = rec
        self.skimmed = skimmed
        self.t0 = t0
        self.request = MessageReader(Direction.REQUEST, bodies)
        self.response = MessageReader(Direction.RESPONSE, bodies)
        self.answered = False  # response headers seen
        self.unparsed = False


class ConnectionRecorder:
    """The tap of one relayed connection (a `ConnectionTap`)."""

    def __init__(self, tap: RecordingTap, info: ConnectionInfo) -> None:
        self.tap = tap
        self.info = info
        self.upstream = info.upstream
        self.calls: dict[int, _Call] = {}
        self.client = Side("client", tap.decoder())
        self.server = Side("server", tap.decoder())
        self.walkers = {True: h2.FrameWalker(READ_TYPES, pieces=True), False: h2.FrameWalker(READ_TYPES, pieces=True)}
        self._warned = False
        self._sink_warned = False
        self._bug_logged = False
        self._now = 0.0
        self._translated: tuple[str | None, list[str]] | None = None  # call_noted(0, ...): every later call

    # The ConnectionTap seam ------------------------------------------------------------
    def client_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._guarded(self.client, self.server, self.walkers[True].feed(data))

    def server_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._guarded(self.server, self.client, self.walkers[False].feed(data))

    def gap(self, from_client: bool, now: float | None = None, why: str = "it fell behind") -> None:
        """Bytes of one direction never reached the tap; the next ones begin a frame.

        The calls open now are recorded as unparsed, without the messages of this direction
        from here on, and so is every later one on this connection: the lost bytes may have
        changed the HPACK state (such calls have no path, so redaction keeps none of their
        message bytes).
        """
        side = self.client if from_client else self.server
        self.walkers[from_client] = h2.FrameWalker(READ_TYPES, pieces=True)
        self._now = self.tap.timer() if now is None else now
        side.end_block()
        self._lose(side, f"bytes of this connection never reached the recorder ({why})")
        for call in self.calls.values():
            call.unparsed = True
            (call.request if from_client else call.response).stop("a gap in the bytes")

    def client_frames(self, frames: list[h2.Frame]) -> None:
        self._guarded(self.client, self.server, frames)

    def server_frames(self, frames: list[h2.Frame]) -> None:
        self._guarded(self.server, self.client, frames)

    def upstream_changed(self, upstream: str) -> None:
        # proxy.routing moves a connection while its first call is open: that call went there too.
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
                self._failed(side, frame)

    def _failed(self, side: Side, frame: h2.Frame) -> None:
        """A bug (or a frame no relay makes): go on, with everything from here unparsed."""
        if not self._bug_logged:
            self._bug_logged = True
            log.exception("conn %d: the tap failed on a %s frame (type %d, stream %d); this connection's calls "
                          "are recorded as unparsed from now on", self.info.conn_id, side.name, frame.type,
                          frame.stream_id)
        for s in (self.client, self.server):
            s.lost = s.lost or "the tap failed on a frame (see the log)"
            s.end_block()
        for call in self.calls.values():
            call.unparsed = True

    def _frame(self, side: Side, other: Side, frame: h2.Frame) -> None:
        kind = frame.type
        if side.in_block and kind != h2.CONTINUATION:
            side.end_block()
            self._lose(side, f"a header block was interrupted by a frame of type {kind}")
            if side is self.client:
                self._request(side.block_stream, None)
        if kind == h2.DATA:
            self._data(side, frame)
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

    def _data(self, side: Side, frame: h2.Frame) -> None:
        call = self.calls.get(frame.stream_id)
        if call is None:
            return
        content: bytes | memoryview | None
        if self.tap.lean and side is self.server:
            content = self._summary(call, frame)
        else:
            content = data_content(frame) if not call.skimmed else b""
        if content is None:
            call.unparsed = True
            call.rec.notes.append(f"unreadable DATA frame from the {side.name} (padding or payload missing)")
        elif content:
            reader = call.request if side is self.client else call.response
            rec = call.rec
            before = len(rec.messages)
            reader.feed(content, rec, self._now - call.t0)
            if len(rec.messages) > before:
                share_bodies(self.tap.bodies, rec, before)
        if side is self.server and frame.flags & h2.FLAG_END_STREAM:
            self._end(frame.stream_id, Outcome.COMPLETED, "the server ended the stream without trailers")

    def _summary(self, call: _Call, frame: h2.Frame) -> bytes | None:
        """A lean DATA frame of the server's: its messages counted as the full bytes would
        count them (None: its padding was malformed)."""
        if call.skimmed:
            return b""
        payload = frame.payload or b""
        if len(payload) != LEAN_SUMMARY.size:  # a small frame of one whole message, passed as it is
            bad, messages, size = False, 1, len(payload) - 5
        else:
            bad, messages, size = read_lean_data(payload)
        if bad:
            return None
        reader = call.response
        if reader.stopped is None and messages:
            reader.count += messages
            call.rec.response_bytes += size
        return b""

    def _settings(self, side: Side, other: Side, frame: h2.Frame) -> None:
        # A side's SETTINGS_HEADER_TABLE_SIZE bounds the other side's encoder; the other side
        # acknowledges it in its own direction.
        if frame.flags & h2.FLAG_ACK:
            side.acknowledged()
            return
        other.peer_allows(h2.settings_values(frame.payload or b"").get(h2.SETTINGS_HEADER_TABLE_SIZE))

    # Header blocks -----------------------------------------------------------------------
    def _header_block(self, side: Side, block: bytes) -> None:
        headers: list[tuple[str, str]] | None = None
        if side.block_error is not None:
            self._lose(side, side.block_error)
        elif side.lost is None:
            try:
                headers = side.decoder.decode(block)
            except Exception as exc:  # hpack and hyperframe raise several types on bad input
                self._lose(side, f"undecodable header block on stream {side.block_stream} "
                                 f"({type(exc).__name__}: {exc})")
        if side is self.client:
            self._request(side.block_stream, headers)
        else:
            self._response(side.block_stream, headers, side.block_end)

    def _request(self, stream_id: int, headers: list[tuple[str, str]] | None) -> None:
        call = self.calls.get(stream_id)
        if call is not None:  # request trailers: gRPC sends none; HPACK state is all that mattered
            if headers is None:
                call.unparsed = True
            return
        info = self.info
        rec = RecordedCall(info.conn_id, stream_id, self.tap.clock(), "", upstream=self.upstream,
                           peer_pid=info.peer_pid, peer_uid=info.peer_uid, peer_gid=info.peer_gid,
                           peer_name=info.peer_name, peer_exe=info.peer_exe)
        call = self.calls[stream_id] = _Call(rec, self._now, self.tap.skimming, self.tap.bodies)
        if headers is None:
            call.unparsed = True
            rec.notes.append(f"request headers unreadable, path unknown: {self.client.lost}")
        else:
            pseudo, metadata, size = self.client.split(headers)
            rec.request_metadata = self._capped(rec, metadata, size, "request metadata")
            rec.path = pseudo.get(":path", "")
            rec.client_api = rec.upstream_api = parse_path(rec.path).api
            if self._translated is not None and rec.client_api not in (None, self._translated[0]):
                rec.upstream_api, notes = self._translated
                rec.notes.extend(notes)
        if self.tap.on_opened is not None:
            try:
                self.tap.on_opened(rec)
            except Exception:
                log.debug("conn %d: call %d %s: on_opened failed", info.conn_id, stream_id, rec.path, exc_info=True)
        if self.server.lost is not None:
            call.unparsed = True
            rec.notes.append(f"response headers unreadable: {self.server.lost}")

    def _response(self, stream_id: int, headers: list[tuple[str, str]] | None, end: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        rec = call.rec
        if headers is not None:
            pseudo, metadata, size = self.server.split(headers)
            if not call.answered and not end:
                rec.response_metadata = self._capped(rec, metadata, size, "response metadata")
            else:  # trailers, or a trailers-only response (a single HEADERS with END_STREAM)
                apply_status(rec, metadata)  # from every field: grpc-status may come last
                rec.trailers = self._capped(rec, metadata, size, "trailers")
            status = pseudo.get(":status")
            if status is not None and status != "200":
                rec.notes.append(f"HTTP status {status}")
        call.answered = True
        if end:
            self._end(stream_id, Outcome.COMPLETED)

    @staticmethod
    def _capped(rec: RecordedCall, metadata: Metadata, size: int, what: str) -> Metadata:
        kept, note = cap_metadata(metadata, what, size)
        if note is not None:
            rec.notes.append(note)
        return kept

    # Ends ------------------------------------------------------------------------------
    def _end(self, stream_id: int, outcome: Outcome, note: str | None = None) -> None:
        call = self.calls.pop(stream_id, None)
        if call is None:
            return
        rec = call.rec
        if outcome is not Outcome.CONNECTION_CLOSED:
            rec.duration_s = self._now - call.t0
        if note is not None:
            rec.notes.append(note)
        for reader in (call.request, call.response):
            cut = reader.unfinished()
            if cut is not None:
                rec.notes.append(cut)
        if call.unparsed:
            rec.notes.append(f"ended as {outcome.value}")
            outcome = Outcome.UNPARSED
        rec.outcome = outcome
        try:
            if call.skimmed and self.tap.on_skimmed is not None:
                self.tap.on_skimmed(rec)
                return
            self.tap.sink.submit(rec)
        except Exception:
            if not self._sink_warned:  # once per connection: a broken sink fails every call
                self._sink_warned = True
                log.exception("conn %d: call %d %s: the recorder's sink failed; the call is not recorded "
                              "(later failures on this connection are logged at debug level)",
                              rec.conn_id, stream_id, rec.path)
            else:
                log.debug("conn %d: call %d %s: the recorder's sink failed", rec.conn_id, stream_id, rec.path,
                          exc_info=True)

    def _lose(self, side: Side, reason: str) -> None:
        """This direction's HPACK state is gone: nothing later on it can be decoded."""
        if side.lost is not None:
            return
        side.lost = reason
        if not self._warned:
            self._warned = True
            log.warning("conn %d: the tap lost the %s's header state (%s); this connection's calls are "
                        "recorded as unparsed from now on (forwarding is unaffected)",
                        self.info.conn_id, side.name, reason)
        call = self.calls.get(side.block_stream)
        if call is not None:
            call.rec.notes.append(f"{side.name}: {reason}")
        if side is self.server:  # every open call still needs the server's trailers
            for call in self.calls.values():
                call.unparsed = True
