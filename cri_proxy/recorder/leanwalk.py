"""The lean tap's walks (recorder.leantap): each chunk of a connection read in one loop per
direction while its frames are the common ones, and the hand-over to the full tap at the first
that is not.

`LeanWalks` holds a connection's lean state: `quick` (every open call a `LeanCall`), the header
blocks kept by their bytes per direction (`_asks`, `_answers`: what each decoded to, kept only
while the direction's HPACK table stays as decoding them left it, and cleared on SETTINGS,
after which the next block may have to open with a table size update), and the counter of its
client's calls. A frame the loop does not take, or a block whose news is more than a plain
status, promotes the connection's LeanCalls (`_promote`) and leaves the rest of the chunk to the
full tap's walk (`_rest`), on the same decoders.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from cri_proxy.h2 import frames as h2
from cri_proxy.h2 import hpack_decoder
from cri_proxy.model.link import LEAN_SUMMARY
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.leancalls import LeanCall, Tally, end_status, promoted
from cri_proxy.recorder.sides import HeaderFacts, Side
from cri_proxy.recorder.tap import ConnectionRecorder, RecordingTap

if TYPE_CHECKING:
    from cri_proxy.recorder.metrics_counts import Count

__all__ = ["MAX_BLOCKS", "MAX_BLOCK_BYTES", "Answer", "LeanWalks"]

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



class LeanWalks(ConnectionRecorder):
    """One connection's tap with the lean walks (the base of recorder.leantap.LeanConnection)."""

    def __init__(self, tap: RecordingTap, info: ConnectionInfo, tally: Tally | None) -> None:
        super().__init__(tap, info)
        self.tally = tally
        self.quick = True
        # Blocks decoded without changing the table, by their bytes, while the table stays as
        # it is (h2.hpack_decoder.Decoder.generation; another decoder: none kept).
        self._asks: dict[bytes, HeaderFacts] = {}
        self._answers: dict[bytes, Answer] = {}
        self._keep = isinstance(self.client.decoder, hpack_decoder.Decoder)
        self.client_count: Count | None = None  # the metrics' counter of this client's calls (Tally.count)

    # Hand-over ---------------------------------------------------------------------------------
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
        """One chunk of the server's (lean: proxy.lean), from a frame boundary, while `quick`.
        The frame loop is `_walk_client`'s again, on purpose: shared, it would cost a call a frame."""
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
