"""The tap's calls: each opened from its request's header block and ended exactly once.

`CallBook` is the half of a connection's tap (recorder.tap.ConnectionRecorder) that turns
decoded header blocks into calls: a request's block opens a `RecordedCall` (path, API
version, metadata capped to size), the server's blocks give it its response metadata,
trailers and status, and its end (trailers with END_STREAM, a reset, the connection
closing) hands it to the sink, once. When a direction's HPACK state is lost (`_lose`),
every later call on the connection is UNPARSED: HPACK cannot resynchronise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Metadata, Outcome, RecordedCall
from cri_proxy.model.sink import CallSink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.opencall import OpenCall, new_call
from cri_proxy.recorder.sides import HeaderFacts, Side
from cri_proxy.recorder.headers import cap_metadata, set_status

__all__ = ["CallBook", "CallsTap"]

log = logging.getLogger(__name__)

_END_STREAM = h2.FLAG_END_STREAM

# Bound once: an Enum member read off its class is a lookup through the metaclass, on every call.
_COMPLETED, _CONNECTION_CLOSED, _UNPARSED = Outcome.COMPLETED, Outcome.CONNECTION_CLOSED, Outcome.UNPARSED


class CallsTap(Protocol):
    """What a connection's calls take from their tap (recorder.tap.RecordingTap, which
    imports this module)."""

    sink: CallSink
    clock: Callable[[], float]
    skimming: bool
    on_skimmed: Callable[[RecordedCall], None] | None


class CallBook:
    """Opening and ending one connection's calls (the base of recorder.tap.ConnectionRecorder)."""

    tap: CallsTap
    info: ConnectionInfo
    upstream: str
    calls: dict[int, OpenCall]
    client: Side
    server: Side
    _now: float
    _lean: bool  # metrics only (RecordingTap.lean): no metadata kept, nor cut
    _warned: bool
    _sink_warned: bool
    _translated: tuple[str | None, list[str]] | None

    # Header blocks -----------------------------------------------------------------------
    def _block(self, side: Side, stream_id: int, flags: int, block: bytes) -> None:
        """A HEADERS frame holding a whole block (walk.TapWalker's `on_block`): nearly every
        block there is; the frame path (`Side.headers`, `Side.continuation`) sets these itself."""
        end = bool(flags & _END_STREAM)
        side.block_stream, side.block_end, side.block_error = stream_id, end, None
        # _header_block's path for a block without error, in line: a call fewer per block
        headers: list[tuple[str, str]] | None = None
        if side.lost is None:
            try:
                headers = side.decoder.decode(block)
            except Exception as exc:  # as in _header_block
                self._undecodable(side, exc)
        if side is self.client:
            self._request(stream_id, headers)
        else:
            self._response(stream_id, headers, end)

    def _undecodable(self, side: Side, exc: Exception) -> None:
        self._lose(side, f"undecodable header block on stream {side.block_stream} ({type(exc).__name__}: {exc})")

    def _header_block(self, side: Side, block: bytes) -> None:
        headers: list[tuple[str, str]] | None = None
        if side.block_error is not None:
            self._lose(side, side.block_error)
        elif side.lost is None:
            try:
                headers = side.decoder.decode(block)
            except Exception as exc:  # hpack and hyperframe raise several types on bad input
                self._undecodable(side, exc)
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
        if headers is None:
            rec = new_call(info, stream_id, self.tap.clock(), "", self.upstream, None, [],
                           [f"request headers unreadable, path unknown: {self.client.lost}"])
            call = self.calls[stream_id] = OpenCall(rec, self._now, self.tap.skimming)
            call.unparsed = True
        else:
            facts = self.client.facts(headers)
            notes: list[str] = []
            # Metrics only (lean): the list is not kept past the call, so not cut to size either.
            metadata = facts.metadata if self._lean or facts.whole else self._capped(notes, facts, "request metadata")
            rec = new_call(info, stream_id, self.tap.clock(), facts.path, self.upstream, facts.api, metadata, notes)
            call = self.calls[stream_id] = OpenCall(rec, self._now, self.tap.skimming)
            if self._translated is not None and facts.api not in (None, self._translated[0]):
                rec.upstream_api, translated = self._translated
                notes.extend(translated)
        if self.server.lost is not None:
            call.unparsed = True
            rec.notes.append(f"response headers unreadable: {self.server.lost}")

    def _response(self, stream_id: int, headers: list[tuple[str, str]] | None, end: bool) -> None:
        call = self.calls.get(stream_id)
        if call is None:
            return
        rec = call.rec
        if headers is not None:
            facts = self.server.facts(headers)
            if not call.answered and not end:
                if not self._lean:
                    rec.response_metadata = facts.metadata if facts.whole else \
                        self._capped(rec.notes, facts, "response metadata")
            else:  # trailers, or a trailers-only response (a single HEADERS with END_STREAM)
                set_status(rec, facts.status)  # from every field: grpc-status may come last
                if not self._lean:
                    rec.trailers = facts.metadata if facts.whole else self._capped(rec.notes, facts, "trailers")
            if facts.http_note is not None:
                rec.notes.append(facts.http_note)
        call.answered = True
        if end:
            self._end(stream_id, _COMPLETED)

    @staticmethod
    def _capped(notes: list[str], facts: HeaderFacts, what: str) -> Metadata:
        """The metadata cut to size (its callers take a whole list, nearly every one, as it is)."""
        if facts.whole:
            return facts.metadata
        kept, note = cap_metadata(facts.metadata, what, facts.size)
        if note is not None:
            notes.append(note)
        return kept

    # Ends ------------------------------------------------------------------------------
    def _end(self, stream_id: int, outcome: Outcome, note: str | None = None) -> None:
        call = self.calls.pop(stream_id, None)
        if call is None:
            return
        rec = call.rec
        if outcome is not _CONNECTION_CLOSED:
            rec.duration_s = self._now - call.t0
        if note is not None:
            rec.notes.append(note)
        if call.request is not None or call.response is not None:
            for reader in (call.request, call.response):
                if reader is not None and (cut := reader.unfinished()) is not None:
                    rec.notes.append(cut)
        if call.unparsed:
            rec.notes.append(f"ended as {outcome.value}")
            outcome = _UNPARSED
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

    @staticmethod
    def _unreadable(call: OpenCall, side: Side) -> None:
        call.unparsed = True
        call.rec.notes.append(f"unreadable DATA frame from the {side.name} (padding or payload missing)")
