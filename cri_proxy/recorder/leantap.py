"""The tap for metrics alone (`--metrics-listen` without `--db` or `--otlp-endpoint`): the
calls counted straight from their frames, with the full tap (recorder.tap) for what is rare.

In this mode the relay ships the server's DATA as summaries (proxy.lean) and nothing needs
a call's metadata or messages: the metrics read its path, status, duration and message bytes.
So while a connection's frames are the common ones (HEADERS holding a whole block, DATA of
whole messages or their summaries, SETTINGS, PING, WINDOW_UPDATE) `LeanConnection` walks each
chunk in one loop: a header block is looked up by its bytes among the blocks decoded since
the direction's HPACK table last changed (a server's every answer and trailers, a client's
every request of a kind; decoded only when not found, as proxy.translate keeps its rewrites),
a call opened from it is a `LeanCall` (its facts, times and byte counts), and a call ended by
trailers whose only news is a grpc-status is counted right away into the metrics peer's plain
numbers (leancalls.Tally, metrics.CallMetrics.tally_entry), without a `RecordedCall`.

Anything else (a frame cut by a chunk's end, CONTINUATION, padding, RST_STREAM, GOAWAY, a
message cut by a frame, a status that is not a plain one, a note, a gap, the connection
closing, skimming, translation) first turns every open `LeanCall` into the `OpenCall` the
full tap would hold by then (`_promote`), and the full tap goes on from that frame, on the
same HPACK decoders; once it holds no open call and its walks sit at frame boundaries the
next chunk is walked here again. So the calls and metrics are what the full tap gives
(tests/recorder/test_leantap.py compares both on the same bytes, however they are cut).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cri_proxy.h2 import frames as h2
from cri_proxy.h2 import hpack_decoder
from cri_proxy.model.link import LEAN_SUMMARY
from cri_proxy.model.sink import CallSink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.leancalls import LeanCall, Tally, end_status, promoted
from cri_proxy.recorder.sides import HeaderDecoder, HeaderFacts, Side
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap, fast_decoder

if TYPE_CHECKING:
    from cri_proxy.recorder.metrics import CallMetrics
    from cri_proxy.recorder.metrics_counts import Count

__all__ = ["LeanConnection", "LeanTap"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">IBI").unpack_from  # a frame header: length << 8 | type, flags, stream id
_LENGTH = struct.Struct(">I").unpack_from  # a gRPC message's length, after its compressed flag
_SUMMARY = LEAN_SUMMARY.unpack_from
_SUMMARY_SIZE = LEAN_SUMMARY.size
_PADDED = h2.FLAG_PADDED
_PADDED_OR_END = h2.FLAG_PADDED | h2.FLAG_END_STREAM
_END_HEADERS = h2.FLAG_END_HEADERS
_WHOLE_BLOCK = h2.FLAG_END_HEADERS | h2.FLAG_PADDED | h2.FLAG_PRIORITY  # of these, END_HEADERS alone
_LAST_KNOWN = h2.CONTINUATION  # frame types above it are unknown: walked over, as the full tap does
_MASK = 0x7FFFFFFF
MAX_BLOCKS = 64  # header blocks kept per direction, decoded (as h2.hpack_decoder keeps them)
MAX_BLOCK_BYTES = 1024

Answer = tuple[list[tuple[str, str]], HeaderFacts, "int | None"]  # a server block: fields, facts, end_status


class LeanTap(RecordingTap):
    """A `RecordingTap` for metrics alone (always `lean`); `sink` a recorder.telemetry
    Telemetry counts calls here without them being built (`Telemetry.tally`)."""

    def __init__(self, sink: CallSink, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 decoder: Callable[[], HeaderDecoder] = fast_decoder) -> None:
        super().__init__(sink, clock, timer, decoder, lean=True)
        tally = getattr(sink, "tally", None)
        metrics: CallMetrics | None = tally() if callable(tally) else None
        self.tally = Tally(metrics) if metrics is not None else None

    def open(self, info: ConnectionInfo) -> LeanConnection:
        return LeanConnection(self, info)


class LeanConnection(ConnectionRecorder):
    """One connection's tap: `quick` while every open call is a `LeanCall` and this class
    walks the chunks; else the full tap (the base class) does, with `OpenCall`s."""

    def __init__(self, tap: LeanTap, info: ConnectionInfo) -> None:
        super().__init__(tap, info)
        self.tally = tap.tally
        self.quick = True
        # Blocks decoded without changing the table, by their bytes, while the table stays as
        # it is (h2.hpack_decoder.Decoder.generation; another decoder: none kept).
        self._asks: dict[bytes, HeaderFacts] = {}
        self._answers: dict[bytes, Answer] = {}
        self._keep = isinstance(self.client.decoder, hpack_decoder.Decoder)
        self.client_count: Count | None = None  # the metrics' counter of this client's calls (Tally.count)

    # The ConnectionTap seam ------------------------------------------------------------
    def client_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._now = self.tap.timer()
        data = data if type(data) is bytes else bytes(data)
        if not (self.quick and not self.tap.skimming) and not self._ready():
            self.walkers[True].feed(data)
            return
        try:
            self._walk_client(data)
        except Exception:
            self._promote()
            self._failed(self.client, -1, 0)

    def server_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._now = self.tap.timer()
        data = data if type(data) is bytes else bytes(data)
        if not (self.quick and not self.tap.skimming) and not self._ready():
            self.walkers[False].feed(data)
            return
        try:
            self._walk_server(data)
        except Exception:
            self._promote()
            self._failed(self.server, -1, 0)

    def gap(self, from_client: bool, now: float | None = None, why: str = "it fell behind") -> None:
        self._promote()
        super().gap(from_client, now, why)

    def thin(self, from_client: bool, on: bool, now: float) -> None:
        self._promote()
        super().thin(from_client, on, now)

    def client_frames(self, frames: list[h2.Frame]) -> None:
        self._promote()
        super().client_frames(frames)

    def server_frames(self, frames: list[h2.Frame]) -> None:
        self._promote()
        super().server_frames(frames)

    def upstream_changed(self, upstream: str) -> None:
        self._promote()  # a LeanCall takes the connection's upstream when it is promoted
        super().upstream_changed(upstream)

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        self._promote()
        super().call_noted(stream_id, upstream_api, notes)

    def closed(self, reason: str | None) -> None:
        self._promote()
        super().closed(reason)

    # Which walk ----------------------------------------------------------------------------
    def _ready(self) -> bool:
        """Whether this chunk is walked here: every open call a LeanCall, or none open and the
        full tap's state plain again (its walks at frame boundaries, no block open, neither
        direction's HPACK state lost, no thinning, no translation, not skimming)."""
        if self.quick:  # and skimming: calls that start now are the full tap's
            self._promote()
            return False
        if self.calls or self.tap.skimming or self._translated is not None or True in self.thinned.values():
            return False
        client, server = self.client, self.server
        if client.lost is not None or server.lost is not None or client.in_block or server.in_block:
            return False
        if any(w.held or w.kind >= 0 for w in self.walkers.values()):
            return False
        self.quick = True
        return True

    def _promote(self) -> None:
        """Every LeanCall open becomes the OpenCall the full tap would have made of it."""
        if not self.quick:
            return
        self.quick = False
        self._asks.clear()  # the full tap decodes what comes: the tables may change meanwhile
        self._answers.clear()
        calls = self.calls
        for stream_id, call in list(calls.items()):
            if type(call) is LeanCall:
                calls[stream_id] = promoted(call, self.info, stream_id, self.upstream)

    def _rest(self, side: Side, data: bytes, pos: int) -> None:
        """The full tap takes this chunk over from the frame at `pos`."""
        self._promote()
        if pos < len(data):
            self.walkers[side is self.client].feed(data[pos:] if pos else data)

    # The client's frames -------------------------------------------------------------------
    def _walk_client(self, data: bytes) -> None:
        """One chunk of the client's, from a frame boundary, while `quick`."""
        calls: dict[int, LeanCall] = self.calls  # type: ignore[assignment]  # quick: every open call is one
        side, asks, header, length = self.client, self._asks, _HEADER, _LENGTH
        now = self._now
        wall: float | None = None
        pos, end = 0, len(data)
        while pos + 9 <= end:
            size_kind, flags, stream = header(data, pos)
            stop = pos + 9 + (size_kind >> 8)
            if stop > end:
                break
            kind = size_kind & 0xFF
            if kind == 8:  # WINDOW_UPDATE: most of a busy client's frames, never read
                pos = stop
                continue
            if kind == 1:  # HEADERS
                if flags & _WHOLE_BLOCK != _END_HEADERS:
                    break
                stream &= _MASK
                side.block_stream = stream
                block = data[pos + 9:stop]
                facts = asks.get(block)
                if facts is None:
                    facts = self._ask(block, stream, flags)
                    if facts is None:  # undecodable: the full tap has it from here
                        self._rest(side, data, stop)
                        return
                if stream not in calls:  # else request trailers: gRPC sends none; the HPACK state was all
                    if wall is None:
                        wall = self.tap.clock()
                    calls[stream] = LeanCall(facts, now, wall)
            elif kind == 0:  # DATA: one whole message (or none) on an open call, counted
                call = calls.get(stream & _MASK)
                if call is not None and stop > pos + 9:
                    if flags & _PADDED or stop - pos < 14 or length(data, pos + 10)[0] != stop - pos - 14:
                        break
                    call.sent += 1
                    call.request_bytes += stop - pos - 14
                elif flags & _PADDED:
                    break
            elif kind == 4:
                self._settings_frame(side, self.server, flags, stream, data[pos + 9:stop])
            elif kind != 6 and kind != 2 and kind <= _LAST_KNOWN:  # not PING, PRIORITY or unknown
                break
            pos = stop
        if pos < end:
            self._rest(side, data, pos)

    def _ask(self, block: bytes, stream: int, flags: int) -> HeaderFacts | None:
        """A request block not kept: decoded (and kept if the table stayed as it was); None
        when it cannot be decoded (the full tap's account of it is made)."""
        decoder = self.client.decoder
        generation = decoder.generation if self._keep else -1  # type: ignore[attr-defined]
        try:
            headers = decoder.decode(block)
        except Exception as exc:  # hpack raises several types on bad input
            self._block_failed(self.client, stream, flags, exc)
            return None
        facts = self.client.facts(headers)
        if self._keep:
            self._kept(self._asks, block, decoder.generation == generation, facts)  # type: ignore[attr-defined]
        return facts

    # The server's frames -------------------------------------------------------------------
    def _walk_server(self, data: bytes) -> None:
        """One chunk of the server's (lean: proxy.lean), from a frame boundary, while `quick`."""
        calls: dict[int, LeanCall] = self.calls  # type: ignore[assignment]  # quick: every open call is one
        side, answers, header, summary, summary_size = self.server, self._answers, _HEADER, _SUMMARY, _SUMMARY_SIZE
        tally, now = self.tally, self._now
        pos, end = 0, len(data)
        while pos + 9 <= end:
            size_kind, flags, stream = header(data, pos)
            stop = pos + 9 + (size_kind >> 8)
            if stop > end:
                break
            kind = size_kind & 0xFF
            if kind == 1:  # HEADERS
                if flags & _WHOLE_BLOCK != _END_HEADERS:
                    break
                stream &= _MASK
                call = calls.get(stream)
                if call is not None and call.answered and not flags & 1:
                    break  # a second block that does not end the call: the full tap reads it
                side.block_stream = stream
                block = data[pos + 9:stop]
                known = answers.get(block)
                if known is None:
                    known = self._answer(block, stream, flags)
                    if known is None:
                        self._rest(side, data, stop)
                        return
                if call is not None:
                    if not flags & 1:
                        if known[1].http_note is not None:
                            self._handed(stream, known[0], False, data, stop)
                            return
                        call.answered = True
                    elif known[2] is not None:  # counted as metrics.CallMetrics.observe counts it
                        del calls[stream]
                        if tally is None or not tally.count(call, known[2], now - call.t0, self):
                            self._unplain(stream, call, known)
                    else:  # a note to make, or no plain status: the full tap's account
                        self._handed(stream, known[0], True, data, stop)
                        return
            elif kind == 0:  # DATA: a lean summary, or a small frame of one whole message passed as it is
                call = calls.get(stream & _MASK)
                if call is not None:
                    if flags & _PADDED_OR_END:
                        break
                    if stop - pos - 9 != summary_size:
                        call.got += 1
                        call.response_bytes += stop - pos - 14
                    else:
                        bad, messages, size = summary(data, pos + 9)
                        if bad:
                            break
                        call.got += messages
                        call.response_bytes += size
            elif kind == 4:
                self._settings_frame(side, self.client, flags, stream, data[pos + 9:stop])
            elif kind != 8 and kind != 6 and kind != 2 and kind <= _LAST_KNOWN:
                break
            pos = stop
        if pos < end:
            self._rest(side, data, pos)

    def _answer(self, block: bytes, stream: int, flags: int) -> Answer | None:
        """A server block not kept, as `_ask` takes a request's."""
        decoder = self.server.decoder
        generation = decoder.generation if self._keep else -1  # type: ignore[attr-defined]
        try:
            headers = decoder.decode(block)
        except Exception as exc:
            self._block_failed(self.server, stream, flags, exc)
            return None
        facts = self.server.facts(headers)
        known = (headers, facts, end_status(facts))
        if self._keep:
            self._kept(self._answers, block, decoder.generation == generation, known)  # type: ignore[attr-defined]
        return known

    @staticmethod
    def _kept(blocks: dict[bytes, Any], block: bytes, unchanged: bool, value: object) -> None:
        """Keep what `block` decoded to while the table stays as it is: a block that changed it
        may have changed what every kept one stands for. Past MAX_BLOCKS (blocks that differ
        call by call without indexing, e.g. a literal grpc-timeout) they start over."""
        if not unchanged:
            blocks.clear()
        elif len(block) <= MAX_BLOCK_BYTES:
            if len(blocks) >= MAX_BLOCKS:
                blocks.clear()
            blocks[block] = value

    def _settings_frame(self, side: Side, other: Side, flags: int, stream: int, payload: bytes) -> None:
        """SETTINGS, as the full tap takes it: it may change a decoder's allowed table size,
        after which the next block must open with a size update (kept blocks do not)."""
        self._asks.clear()
        self._answers.clear()
        self._frame(side, other, h2.Frame(h2.SETTINGS, flags, stream & _MASK, len(payload), payload))

    def _handed(self, stream: int, headers: list[tuple[str, str]], end: bool, data: bytes, stop: int) -> None:
        """A server block the full tap reads (decoded already): it takes the chunk from `stop`."""
        self._promote()
        self._response(stream, headers, end)
        self._rest(self.server, data, stop)

    # Ends ------------------------------------------------------------------------------------
    def _unplain(self, stream_id: int, call: LeanCall, known: Answer) -> None:
        """A LeanCall ended plainly that is not counted here (no metrics peer to count it into,
        or a path the table lacks): promoted and ended by the full tap, which hands it to the sink."""
        self.calls[stream_id] = promoted(call, self.info, stream_id, self.upstream)
        self._response(stream_id, known[0], True)

    def _block_failed(self, side: Side, stream: int, flags: int, exc: Exception) -> None:
        """A whole block the decoder refused, as the full tap's `_header_block` takes it."""
        self._promote()
        side.block_stream, side.block_end, side.block_error = stream, bool(flags & h2.FLAG_END_STREAM), None
        self._undecodable(side, exc)
        if side is self.client:
            self._request(stream, None)
        else:
            self._response(stream, None, side.block_end)
