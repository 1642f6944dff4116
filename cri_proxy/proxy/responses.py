"""The runtime's bytes on a translating connection: relayed as chunks, with three exceptions.

Responses need no translation, so they go to the client as they arrive, the chunk itself
whenever it can be, walking only the 9-byte frame headers as the plain relay does
(h2.FrameWalker.track). A frame is looked into, or left out, only when:
- it is SETTINGS: SETTINGS_HEADER_TABLE_SIZE bounds the proxy's own encoder towards the
  runtime (and the client's, which the proxy decodes), so its payload is read on the way;
- it belongs to a stream the proxy answered itself after the runtime had seen the request
  (a refused checked request, reset towards the runtime): the client has its answer, so
  anything else of the runtime's on that stream is dropped (DATA with its connection window
  given back to the runtime), except header blocks, which the client's HPACK decoder must
  see to stay in step.
While a fault rule on pod facts is loaded, the DATA of the few answers that teach the relay
about ids (cri_proxy.proxy.bodyfaults) is copied on the way, and goes on untouched.
A frame header split across chunks is held back (at most 8 bytes) until it is whole, so
every chunk the client gets ends either inside a frame's payload or at a frame boundary,
where the proxy may put in frames of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.constants import FRAME_HEADER
from cri_proxy.h2.frames import (
    CONTINUATION,
    DATA,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    HEADERS,
    RST_STREAM,
    SETTINGS,
)

if TYPE_CHECKING:
    from cri_proxy.proxy.bodyfaults import BodyFaults
    from cri_proxy.proxy.connection import Connection, End

_HEADER: Final = FRAME_HEADER.unpack_from
_BLOCK: Final = frozenset({h2.HEADERS, h2.CONTINUATION})
STREAM_MASK: Final = 0x7FFFFFFF  # a frame header's stream id, without the reserved bit


def chunk_tail(data: bytes, pos: int) -> tuple[int, int, bytes]:
    """Where a walk of the chunk `data` that stopped at `pos` (the next frame's start) leaves off,
    for both sides' walkers: the current frame's payload bytes still to come, where the bytes
    that may go on now end, and a frame header cut short (kept for the next chunk)."""
    end = len(data)
    if pos > end:
        return pos - end, end, b""
    return 0, pos, data[pos:] if pos < end else b""


class ResponseRelay:
    """The upstream-to-client side of one translating connection (see the module's docstring)."""

    __slots__ = ("conn", "hijacked", "on_table_size", "skip", "head", "drop", "gather", "pending", "in_block",
                 "replies", "watched")

    def __init__(self, conn: Connection, hijacked: set[int], on_table_size: Callable[[int], None],
                 replies: BodyFaults | None = None) -> None:
        self.conn = conn
        self.replies = replies
        self.watched: Collection[int] = () if replies is None else replies.replies  # streams whose DATA is read
        self.hijacked = hijacked  # streams whose runtime frames are left out
        self.on_table_size = on_table_size
        self.skip = 0  # payload bytes of the current frame still to come
        self.head = b""  # a frame header split across chunks, not forwarded yet
        self.drop = False  # the current frame is left out
        self.gather: bytearray | None = None  # the current SETTINGS frame's payload so far
        self.pending: tuple[int, int, int] | None = None  # the current frame's (type, flags, stream)
        self.in_block = False  # between a HEADERS frame and its last CONTINUATION

    def can_inject(self) -> bool:
        """Whether what the client has had so far ends at a frame boundary outside a header block."""
        return not self.skip and not self.in_block

    def from_upstream(self, end: End, data: bytes) -> None:
        conn = self.conn
        if end is not conn.upstream:
            return
        boundary = not self.skip
        out = self.feed(data)
        conn.send_client(out)
        conn.server_in_block = self.in_block
        if conn.tap is not None and out:
            conn.feed_tap(False, out, boundary)
        conn.flush_inject()
        conn.close_if_drained()

    def feed(self, data: bytes) -> bytes:
        """The bytes of `data` the client gets (see the module's docstring)."""
        if self.head:
            data, self.head = self.head + data, b""
        end = len(data)
        parts: list[bytes] | None = None  # None: all of data[:pos] goes (the common case)
        keep = 0  # where the bytes still to go begin, once something was left out
        watched = self.watched
        pos = self.skip
        if pos:
            if pos > end:
                return self._within(data)
            self._rest(data)
            if self.drop:
                parts, keep = [], pos
            self._done()
        hijacked, streams = self.hijacked, self.conn.open_streams
        while pos + 9 <= end:
            high, low, kind, flags, sid = _HEADER(data, pos)
            nxt = pos + 9 + (high << 16 | low)
            if nxt <= end and kind != SETTINGS and not watched and not (hijacked and sid & STREAM_MASK in hijacked):
                pos = nxt  # a whole frame that goes on, most of them: what it changes (as _done), at once
                if kind == DATA:
                    if flags & FLAG_END_STREAM:
                        streams.discard(sid & STREAM_MASK)
                elif kind == HEADERS or kind == CONTINUATION:
                    self.in_block = not flags & FLAG_END_HEADERS
                    if flags & FLAG_END_STREAM and kind == HEADERS:
                        streams.discard(sid & STREAM_MASK)
                elif kind == RST_STREAM:
                    streams.discard(sid & STREAM_MASK)
                continue
            if self._open(data, pos, nxt, kind, flags, sid & STREAM_MASK):  # left out
                if parts is None:
                    parts = []
                parts.append(data[keep:pos])
                keep = min(nxt, end)
            pos = nxt
            if pos <= end:
                self._done()
        self.skip, stop, self.head = chunk_tail(data, pos)  # a header cut short goes once it is whole
        if parts is None:
            return data if stop == end else data[:stop]
        if keep < stop:
            parts.append(data[keep:stop])
        return b"".join(parts)

    def _within(self, data: bytes) -> bytes:
        """A chunk wholly inside the current frame's payload: what of it the client gets."""
        self.skip -= len(data)
        if self.gather is not None:
            self.gather += data
        return b"" if self.drop else data

    def _rest(self, data: bytes) -> None:
        """The chunk opens with the rest of the frame the last one cut: gathered if it is read."""
        if self.gather is not None:
            self.gather += data[:self.skip]
        self.skip = 0

    def _open(self, data: bytes, start: int, nxt: int, kind: int, flags: int, sid: int) -> bool:
        """A frame from `start` (to `nxt`, perhaps past the chunk) that is looked into or left out,
        or is cut: what to gather of it, and whether it is left out (a hijacked stream's; its
        DATA's connection window given back to the runtime)."""
        self.pending = (kind, flags, sid)
        self.drop = bool(sid) and sid in self.hijacked and kind not in _BLOCK
        length = nxt - start - 9
        if self.drop and kind == h2.DATA and length:
            self.conn.send_upstream(h2.window_update_frame(0, length))  # the client never sees it
        watched = self.watched
        if kind == h2.SETTINGS and not flags & h2.FLAG_ACK or kind == h2.DATA and watched and sid in watched:
            self.gather = bytearray(data[start + 9:min(nxt, len(data))])
        return self.drop

    def _done(self) -> None:
        """The current frame is complete: what it changes (as h2.FrameWalker.track keeps it)."""
        if self.pending is None:
            return
        kind, flags, sid = self.pending
        self.pending, self.drop = None, False
        if kind == h2.SETTINGS and self.gather is not None:
            table = h2.settings_values(bytes(self.gather)).get(h2.SETTINGS_HEADER_TABLE_SIZE)
            self.gather = None
            if table is not None:
                self.on_table_size(table)
        elif kind == h2.DATA and self.gather is not None and self.replies is not None:
            payload, self.gather = self.gather, None
            self.replies.reply(sid, flags, payload)
            if flags & h2.FLAG_END_STREAM:
                self.conn.open_streams.discard(sid)
        elif kind == h2.RST_STREAM:
            self.conn.open_streams.discard(sid)
            if self.watched and self.replies is not None:
                self.replies.ended(sid)
        elif kind == h2.HEADERS or kind == h2.CONTINUATION:
            self.in_block = not flags & h2.FLAG_END_HEADERS
            if kind == h2.HEADERS and flags & h2.FLAG_END_STREAM:
                self.conn.open_streams.discard(sid)
                if self.watched and self.replies is not None:
                    self.replies.ended(sid)  # trailers: no message came
        elif kind == h2.DATA and flags & h2.FLAG_END_STREAM:
            self.conn.open_streams.discard(sid)
