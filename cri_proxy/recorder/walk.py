"""The tap's frame walk: one direction's chunks cut into frames, each handed on where it lies.

`h2.FrameWalker` (the relay's) builds a `Frame` for every frame and a copy of every payload
it keeps; a small call is six or seven frames each way, so the tap walks its own: each frame
it reads goes to `dispatch(side, other, kind, flags, stream, data, start, stop)`, its payload
being `data[start:stop]` (the chunk itself, or the frame's bytes joined once when chunks cut
it). Frames the tap never reads (WINDOW_UPDATE, PING, PRIORITY, unknown types: most of a
busy client's frames) are walked over, unless a header block is open, whose interruption by
them the tap must see.

It cuts frames where hyperframe finds them (tests/recorder/test_walk.py): a DATA frame
without padding that a chunk's end cuts comes out piece by piece as the chunks bring it
(END_STREAM on its last piece only), so a 1 MB reply is never gathered here; any other frame
cut so is held, header and payload, until its last byte comes. What `dispatch` raises is
handed to `failed(side, kind, stream)` and the walk goes on with the next frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.constants import FRAME_HEADER

if TYPE_CHECKING:
    from cri_proxy.recorder.sides import Side

# The frame types whose payload the tap reads.
READ_TYPES: Final = frozenset({h2.DATA, h2.HEADERS, h2.RST_STREAM, h2.SETTINGS, 0x5, h2.GOAWAY, h2.CONTINUATION})
Chunk = bytes | memoryview  # a view only of memory that never changes (ConnectionRecorder.feed)
Dispatch = Callable[["Side", "Side", int, int, int, Chunk, int, int], None]
OnData = Callable[["Side", int, int, Chunk, int, int], None]  # side, stream, flags, data, start, stop
OnBlock = Callable[["Side", int, int, bytes], None]  # side, stream, flags, the header block
Failed = Callable[["Side", int, int], None]

_HEADER = FRAME_HEADER.unpack_from
_DATA, _PADDED, _END_STREAM = h2.DATA, h2.FLAG_PADDED, h2.FLAG_END_STREAM
_WHOLE_BLOCK: Final = h2.FLAG_END_HEADERS | h2.FLAG_PADDED | h2.FLAG_PRIORITY  # of these, END_HEADERS alone
_STREAM_MASK: Final = 0x7FFFFFFF


class TapWalker:
    """One direction's walk; `feed(chunk)` hands on every frame the chunk completes (or piece)."""

    __slots__ = ("side", "other", "dispatch", "on_data", "on_block", "failed", "held", "kind", "flags", "stream",
                 "left")

    def __init__(self, side: Side, other: Side, dispatch: Dispatch, on_data: OnData, on_block: OnBlock,
                 failed: Failed) -> None:
        """`on_data` takes DATA frames without padding (and their pieces), `on_block` HEADERS
        frames holding a whole block without padding or priority (nearly every frame the tap
        reads), while no header block is open; `dispatch` every other frame read."""
        self.side = side
        self.other = other
        self.dispatch = dispatch
        self.on_data = on_data
        self.on_block = on_block
        self.failed = failed
        self.held = bytearray()  # a frame cut by a chunk's end: its header and payload so far
        self.kind = -1  # a frame handed on in pieces (DATA) or walked over, while bytes of it are due
        self.flags = 0
        self.stream = 0
        self.left = 0  # its payload bytes still due

    def feed(self, data: Chunk) -> None:
        end = len(data)
        pos = self._resume(data) if self.held or self.kind >= 0 else 0
        header, side, on_data, on_block, read = _HEADER, self.side, self.on_data, self.on_block, READ_TYPES
        mask, padded, whole = _STREAM_MASK, _PADDED, _WHOLE_BLOCK
        view = type(data) is not bytes  # once per chunk: a check per block costs 2% of a small call
        while pos + 9 <= end:
            high, low, kind, flags, stream = header(data, pos)
            start = pos + 9
            stop = start + (high << 16 | low)
            if stop > end:
                break
            pos = stop
            try:
                if side.in_block:
                    self.dispatch(side, self.other, kind, flags, stream & mask, data, start, stop)
                elif kind == 0 and not flags & padded:  # DATA
                    on_data(side, stream & mask, flags, data, start, stop)
                elif kind == 1 and flags & whole == 4:  # HEADERS with END_HEADERS, without padding or priority
                    block = bytes(data[start:stop]) if view else data[start:stop]  # kept: a view's is copied
                    on_block(side, stream & mask, flags, block)  # type: ignore[arg-type]  # bytes either way
                elif kind in read:
                    self.dispatch(side, self.other, kind, flags, stream & mask, data, start, stop)
            except Exception:
                self.failed(side, kind, stream & mask)
        if pos < end:
            self._hold(data, pos, end)

    def _hold(self, data: Chunk, pos: int, end: int) -> None:
        """The frame at `pos` goes on in the next chunk."""
        if end - pos >= 9 and self._streams(data, pos):
            if end > pos + 9:
                self._piece(data, pos + 9, end)
        else:
            self.held = bytearray(memoryview(data)[pos:end])

    def _streams(self, header: Chunk | bytearray, pos: int) -> bool:
        """Whether the frame whose header is at `pos` is handed on in pieces or walked over
        (then its state is set up), rather than held until it is whole."""
        high, low, kind, flags, stream = _HEADER(header, pos)
        if not (kind == _DATA and not flags & _PADDED) and (kind in READ_TYPES or self.side.in_block):
            return False
        self.kind, self.flags, self.stream, self.left = kind, flags, stream & _STREAM_MASK, high << 16 | low
        return True

    def _resume(self, data: Chunk) -> int:
        """The frame the last chunk cut, continued from `data`: where the next frame begins."""
        held = self.held
        pos = 0
        if held:
            if len(held) < 9:
                pos = 9 - len(held)
                held += data[:pos]
                if len(held) < 9:
                    return len(data)
                if not self._streams(held, 0):
                    return self._complete(data, pos)
                self.held = bytearray()
            else:
                return self._complete(data, pos)
        return self._piece(data, pos, len(data))

    def _piece(self, data: Chunk, start: int, stop: int) -> int:
        """The part of a streamed or walked-over frame in `data[start:stop]`: where it ends."""
        take = min(self.left, stop - start)
        self.left -= take
        kind = self.kind
        if not self.left:
            self.kind = -1
        if kind == _DATA:
            flags = self.flags if self.kind < 0 else self.flags & ~_END_STREAM
            try:
                if self.side.in_block:
                    self.dispatch(self.side, self.other, _DATA, flags, self.stream, data, start, start + take)
                else:
                    self.on_data(self.side, self.stream, flags, data, start, start + take)
            except Exception:
                self.failed(self.side, _DATA, self.stream)
        return start + take

    def _complete(self, data: Chunk, pos: int) -> int:
        """The held frame (its header whole) continued from `data[pos:]`."""
        held = self.held
        need = 9 + (held[0] << 16 | held[1] << 8 | held[2]) - len(held)
        end = len(data)
        if need > end - pos:
            held += memoryview(data)[pos:]
            return end
        held += memoryview(data)[pos:pos + need]
        self.held = bytearray()
        frame = bytes(held)
        kind, flags, stream = frame[3], frame[4], int.from_bytes(frame[5:9], "big") & _STREAM_MASK
        try:
            self.dispatch(self.side, self.other, kind, flags, stream, frame, 9, len(frame))
        except Exception:
            self.failed(self.side, kind, stream)
        return pos + need
