"""Frame boundaries: `FrameWalker`, the incremental walk over one direction's chunks.

The relay forwards bytes untouched; it only walks the 9-byte frame headers (RFC 9113 §4.1)
to know where frames begin and end, which streams are open, and where a header block
lies. The one body it reads (a HEADERS frame's padding and priority) is read here too
(`header_block_fragment`). h2.frames re-exports these names beside the frame builders.
"""

from __future__ import annotations

from dataclasses import dataclass

from cri_proxy.h2.constants import (
    CONTINUATION,
    DATA,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    FRAME_HEADER,
    HEADERS,
    PING,
    RST_STREAM,
    SETTINGS,
)

_WATCHED = frozenset({HEADERS, CONTINUATION, RST_STREAM})  # and DATA that ends a call
_HEADER = FRAME_HEADER.unpack_from


class FrameError(Exception):
    """The byte stream is not HTTP/2 framing the relay can follow."""


@dataclass(slots=True)
class Frame:
    """One frame: its header fields, and its payload when the walker was asked to keep it."""

    type: int
    flags: int
    stream_id: int
    length: int
    payload: bytes | None
    raw: bytes | None = None  # header + payload, only when the walker keeps raw frames


class FrameWalker:
    """Incremental frame splitter for one direction of one connection.

    `feed(chunk)` returns the frames completed by that chunk; `track` is the relay's cheaper
    walk, which only follows the open calls. Payloads are kept only for
    frame types in `keep` (the relay needs header blocks, not DATA); with `raw=True` every
    frame's complete bytes are kept too, for the paths that forward frame by frame.

    Both walks count the bytes they saw (`walked`) and, of those, the bytes of SETTINGS and
    PING frames (`control`): what a flood is made of (proxy.floodguard).
    """

    __slots__ = ("_buf", "_skip", "_pending", "_parts", "_have", "keep", "raw", "at_boundary", "in_block",
                 "walked", "control")

    def __init__(self, keep: frozenset[int] = frozenset(), raw: bool = False) -> None:
        # A walker is used with feed() or with track(), never both: for feed() the buffer holds the
        # header of a frame carried over to the next chunk (its payload so far: _parts, _have bytes),
        # for track() a frame header split across chunks.
        self._buf = bytearray()
        self._parts: list[bytes | memoryview] = []
        self._have = 0
        self._skip = 0  # track(): payload bytes still to skip at the next chunk
        self._pending: Frame | None = None
        self.keep = keep
        self.raw = raw
        self.at_boundary = True
        self.in_block = False  # set by track() on the server side
        self.walked = 0
        self.control = 0

    def plain(self) -> FrameWalker:
        """A walker for track() that carries on this one's counts (the walk goes plain at a boundary)."""
        walker = FrameWalker()
        walker.walked, walker.control = self.walked, self.control
        return walker

    def carried(self) -> bytes:
        """For feed() with `raw`: the bytes so far of the frame the last chunk cut (none at a
        boundary), handed back and forgotten, for the caller to walk on from that frame's
        start some other way (proxy.firstcall, going back to relaying chunks)."""
        data = bytes(self._buf) + b"".join(self._parts)
        self._buf, self._parts, self._have = bytearray(), [], 0
        self.walked -= len(data)  # they are walked again
        self.at_boundary = True
        return data

    def track(self, chunk: bytes, streams: set[int], from_client: bool) -> None:
        """The relay's hottest path: follow frame headers and keep `streams` (the open calls)
        and `in_block` (between a HEADERS frame and its last CONTINUATION) up to date.

        A client HEADERS opens a call; the server's END_STREAM or a reset from either side
        ends it. A frame counts once it is complete, so a connection is never judged idle
        while part of a trailers frame is still on its way. Nothing else is built: this runs
        for every frame of every call, so it unpacks each header once and tests the common
        kinds first (about twice as cheap as building a Frame for each).
        """
        end = len(chunk)
        self.walked += end
        pos = self._skip
        if pos:
            if pos > end:
                self._skip = pos - end
                self.at_boundary = False
                return
            self._skip = 0
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self._apply(pending.type, pending.flags, pending.stream_id, streams, from_client)
        elif self._buf:
            chunk = bytes(self._buf) + chunk  # a header split across chunks: rare, so simply rejoined
            end = len(chunk)
            self._buf = bytearray()
        header = _HEADER
        while pos + 9 <= end:
            high, low, kind, flags, sid = header(chunk, pos)
            pos += 9 + (high << 16 | low)
            if kind == DATA:
                if from_client or not flags & FLAG_END_STREAM:
                    continue  # most frames: payload bytes that change nothing
            elif kind not in _WATCHED:
                if kind == SETTINGS or kind == PING:
                    self.control += 9 + (high << 16 | low)
                continue
            if pos <= end:
                self._apply(kind, flags, sid & 0x7FFFFFFF, streams, from_client)
            else:
                self._pending = Frame(kind, flags, sid & 0x7FFFFFFF, high << 16 | low, None)
        if pos > end:
            self._skip = pos - end
        elif pos < end:
            self._buf = bytearray(chunk[pos:])
        self.at_boundary = pos == end

    def _apply(self, kind: int, flags: int, stream_id: int, streams: set[int], from_client: bool) -> None:
        if kind == RST_STREAM:
            streams.discard(stream_id)
        elif from_client:
            if kind == HEADERS:
                streams.add(stream_id)
        elif kind == HEADERS or kind == CONTINUATION:
            self.in_block = not flags & FLAG_END_HEADERS
            if kind == HEADERS and flags & FLAG_END_STREAM:
                streams.discard(stream_id)
        elif kind == DATA and flags & FLAG_END_STREAM:
            streams.discard(stream_id)

    def feed(self, chunk: bytes) -> list[Frame]:
        """Complete frames with their payloads (those of `keep` types) and raw bytes (`raw`)."""
        self.walked += len(chunk)
        frames: list[Frame] = []
        pos = 0
        if self._buf:  # a frame carried over: complete it with the bytes it lacks, then read on
            pos = self._complete(chunk, frames)
            if pos < 0:
                self.at_boundary = False
                return frames
        return self._cut(chunk, pos, frames)

    def _complete(self, chunk: bytes, frames: list[Frame]) -> int:
        """The carried frame, completed from `chunk`: where the chunk's next frame begins, or
        -1 when the chunk ended first. The payload is joined once from the pieces the chunks
        held (a 1 MB DATA frame spans several chunks: one copy of it, not one per chunk)."""
        buf = self._buf
        pos = 0
        if len(buf) < 9:
            pos = 9 - len(buf)
            buf += chunk[:pos]
            if len(buf) < 9:
                return -1
        length = (buf[0] << 16) | (buf[1] << 8) | buf[2]
        kind = buf[3]
        wanted = self.raw or kind in self.keep
        need = length - self._have
        if need > len(chunk) - pos:
            self._have += len(chunk) - pos
            if wanted:
                self._parts.append(_piece(chunk, pos, len(chunk)))
            return -1
        payload = None
        if wanted:
            parts = self._parts
            parts.append(_piece(chunk, pos, pos + need))
            first = parts[0]
            payload = first if len(parts) == 1 and isinstance(first, bytes) else b"".join(parts)
        pos += need
        header = bytes(buf)
        self._buf, self._parts, self._have = bytearray(), [], 0
        if kind == SETTINGS or kind == PING:
            self.control += 9 + length
        frames.append(Frame(kind, header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF, length,
                            payload if kind in self.keep else None,
                            header + payload if self.raw and payload is not None else None))
        return pos

    def _cut(self, chunk: bytes, pos: int, frames: list[Frame]) -> list[Frame]:
        keep, raw = self.keep, self.raw
        end = len(chunk)
        while pos + 9 <= end:
            length = (chunk[pos] << 16) | (chunk[pos + 1] << 8) | chunk[pos + 2]
            nxt = pos + 9 + length
            if nxt > end:
                break
            kind = chunk[pos + 3]
            if kind == SETTINGS or kind == PING:
                self.control += 9 + length
            frames.append(Frame(kind, chunk[pos + 4], int.from_bytes(chunk[pos + 5:pos + 9], "big") & 0x7FFFFFFF,
                                length, chunk[pos + 9:nxt] if kind in keep else None,
                                chunk[pos:nxt] if raw else None))
            pos = nxt
        if pos < end:  # a frame the chunk cuts: its header, and what it has of the payload if kept
            head = min(9, end - pos)
            self._buf = bytearray(chunk[pos:pos + head])
            self._have = end - pos - head
            if self._have and (raw or chunk[pos + 3] in keep):
                self._parts = [_piece(chunk, pos + 9, end)]
        self.at_boundary = pos == end
        return frames


def _piece(chunk: bytes, start: int, stop: int) -> bytes | memoryview:
    """Part of a frame cut across chunks, kept until the frame is whole: a view of the chunk
    (no copy) when the chunk is immutable bytes, else a copy."""
    if type(chunk) is bytes:
        return memoryview(chunk)[start:stop]
    return bytes(chunk[start:stop])


def header_block_fragment(frame: Frame) -> bytes:
    """The HPACK bytes of a HEADERS or CONTINUATION frame, without padding and priority.

    FrameError for a payload too short for the padding and priority its flags announce
    (RFC 9113 §6.2: a connection error). Read here rather than by hyperframe, whose frame
    classes refuse stream 0 with an error of their own before the body is even looked at.
    """
    payload = frame.payload
    if payload is None:
        raise FrameError(f"frame on stream {frame.stream_id} was walked without its payload")
    flags = frame.flags
    if frame.type == CONTINUATION or not flags & (FLAG_PADDED | FLAG_PRIORITY):
        return payload
    start, end = 0, len(payload)
    if flags & FLAG_PADDED:
        if not payload:
            raise FrameError(f"malformed HEADERS frame on stream {frame.stream_id}: PADDED without a pad length")
        start, end = 1, end - payload[0]
    if flags & FLAG_PRIORITY:
        start += 5
    if start > end:
        raise FrameError(f"malformed HEADERS frame on stream {frame.stream_id}: its padding and priority "
                         f"take more than its {len(payload)}-byte payload")
    return payload[start:end]
