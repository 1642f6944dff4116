"""gRPC on HTTP/2, as the tap reads it: length-prefixed messages and header lists.

`MessageReader` cuts one direction of one call into gRPC messages (1-byte compressed flag,
4-byte big-endian length, bytes) across DATA frames, however the frames split them.
`LastBodies` and `share_bodies` let calls hold one copy of a large body repeated from call
to call.
Header lists (text, metadata, status) are headers.py's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Direction, Message, RecordedCall

_REQUEST = Direction.REQUEST  # bound once: an Enum member off its class is a metaclass lookup

ERROR_NAMES: Final = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
    0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code: int) -> str:
    return f"{ERROR_NAMES.get(code, 'unknown error')} ({code})"


class MessageReader:
    """The gRPC messages of one direction of one call.

    A message cut by frame boundaries is kept as the pieces of DATA that carry it (bytes the
    frame walker cut out of the relayed chunks, or views of them) and joined once, when its
    last byte arrives: one copy of the body. A large one (SHARE_MIN_BYTES) is first compared,
    piece by piece as it comes, with the last body of its kind of the same length
    (`LastBodies`, the tap's): while they agree nothing is kept, and a body equal to it is
    that very object, never assembled (a 1 MB stats reply repeated call after call: no copy).
    """

    __slots__ = ("direction", "count", "memo", "_prefix", "_parts", "_need", "_have", "_like", "_compressed",
                 "stopped")

    def __init__(self, direction: Direction, memo: LastBodies | None = None, count: int = 0) -> None:
        self.direction = direction
        self.count = count  # the messages read so far (the next one's index)
        self.memo = memo
        self._prefix = b""  # a prefix cut by a frame boundary
        self._parts: list[bytes | memoryview] | None = None  # a message cut by a frame boundary: its pieces
        self._need = 0  # bytes still missing from it
        self._have = 0  # bytes of it so far
        self._like: bytes | None = None  # the known body it has agreed with so far (then _parts is empty)
        self._compressed = False
        self.stopped: str | None = None  # why later bytes are not read

    def stop(self, why: str) -> None:
        """Bytes of this direction went missing: whatever comes next cannot be cut into
        the right messages (and could splice a secret into a harmless-looking one)."""
        self._parts, self._like, self._prefix, self._need, self._have = None, None, b"", 0, 0
        self.stopped = why

    def feed(self, data: bytes | memoryview, call: RecordedCall, offset: float) -> None:
        """Read a DATA frame's content (padding already removed), or a piece of one."""
        if self.stopped is not None:
            return
        pos, end = 0, len(data)
        while pos < end:
            if self._parts is not None:
                take = min(self._need, end - pos)
                self._add(data[pos:pos + take])  # the whole payload: no copy
                pos += take
                if not self._need:
                    parts, like = self._parts, self._like
                    self._parts, self._like, self._have = None, None, 0
                    self._emit(call, like if like is not None else b"".join(parts), self._compressed, offset)
                continue
            if self._prefix or end - pos < 5:
                take = min(5 - len(self._prefix), end - pos)
                self._prefix += data[pos:pos + take]
                pos += take
                if len(self._prefix) < 5:
                    return
                head, self._prefix = self._prefix, b""
            else:
                head = bytes(data[pos:pos + 5])
                pos += 5
            length = int.from_bytes(head[1:5], "big")
            if length <= end - pos:
                self._emit(call, bytes(data[pos:pos + length]), head[0] != 0, offset)
                pos += length
            else:
                self._begin(call, length, data[pos:end])
                self._compressed = head[0] != 0
                pos = end

    def _begin(self, call: RecordedCall, length: int, piece: bytes | memoryview) -> None:
        """A message longer than what is here: its first piece."""
        self._need, self._have, self._parts = length, 0, []
        like = None
        if self.memo is not None and length >= SHARE_MIN_BYTES:
            like = self.memo.get((call.path, self.direction is _REQUEST))
        self._like = like if like is not None and len(like) == length else None
        self._add(piece)

    def _add(self, piece: bytes | memoryview) -> None:
        parts = self._parts
        assert parts is not None
        size = len(piece)
        like = self._like
        if like is None or not like.startswith(piece, self._have):
            if like is not None:  # it differs from here on: the part that agreed, then the rest
                parts.append(memoryview(like)[:self._have])
                self._like = None
            if size:
                parts.append(piece)
        self._have += size
        self._need -= size

    def _emit(self, call: RecordedCall, body: bytes, compressed: bool, offset: float) -> None:
        call.add_message(Message(self.direction, self.count, offset, body, compressed))
        self.count += 1

    def unfinished(self) -> str | None:
        """What is left of a message cut short, if any, for a note."""
        if self.stopped is not None:
            return f"{self.direction.value} messages after {self.stopped} are not recorded"
        if self._parts is not None:
            return f"{self.direction.value} message cut short ({self._have} of {self._have + self._need} bytes)"
        if self._prefix:
            return f"{self.direction.value} message cut short (inside its 5-byte prefix)"
        return None


SHARE_MIN_BYTES = 4096  # smaller bodies cost little memory each: not worth a comparison
Kind = tuple[str, bool]  # (method path, is the request)


class LastBodies:
    """The last large body of each kind, for `MessageReader` and `share_bodies`; bounded:
    `max_bytes` in all (the least recently seen kinds go first), none over `max_body_bytes`."""

    def __init__(self, max_bytes: int = 4 << 20, max_body_bytes: int = 2 << 20) -> None:
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self.bytes = 0
        self.version = 0  # changed by every put (recorder.squeeze.Known publishes the bodies anew)
        self._last: OrderedDict[Kind, bytes] = OrderedDict()

    def get(self, kind: Kind) -> bytes | None:
        return self._last.get(kind)

    def values(self) -> list[bytes]:
        return list(self._last.values())

    def put(self, kind: Kind, data: bytes) -> None:
        self.version += 1
        last = self._last
        old = last.pop(kind, None)
        if old is not None:
            self.bytes -= len(old)
        if len(data) > self.max_body_bytes:
            return
        last[kind] = data
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            self.bytes -= len(last.popitem(last=False)[1])


def share_bodies(memo: LastBodies, call: RecordedCall, start: int) -> None:
    """The call's messages from `start` on, each large one replaced by the equal body `memo`
    holds for its kind (method, direction), if any; the others become the last of theirs.

    So the calls queued for the writer hold one copy of a reply repeated call after call (a
    1 MB stats reply: one, not one per call of a batch), and the writer's own memo
    (recorder.bodies, on the pipeline's side) knows each of them by identity, without
    comparing their bytes again. (A body cut across frames was compared as it came already:
    `MessageReader` gives it that very object, which costs nothing more here.)
    """
    for message in call.messages[start:]:
        data = message.data
        if len(data) >= SHARE_MIN_BYTES:
            kind = (call.path, message.direction is _REQUEST)
            last = memo.get(kind)
            if last is data:
                continue
            if last is not None and len(last) == len(data) and last == data:
                message.data = last
            else:
                memo.put(kind, data)


def known_body(memo: LastBodies, kind: Kind, data: bytes | memoryview, start: int, stop: int) -> bytes | None:
    """The body `memo` holds for `kind` when `data[start:stop]` is equal to it: a whole large
    message repeated from the last call then costs a comparison, not a copy."""
    last = memo.get(kind)
    if last is not None and len(last) == stop - start and last.startswith(memoryview(data)[start:stop]):
        return last
    return None


def data_content(frame: h2.Frame) -> bytes | memoryview | None:
    """A DATA frame's content without its padding; None when the padding is malformed."""
    payload = frame.payload
    if payload is None:
        return None
    if not frame.flags & h2.FLAG_PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        return None
    return payload[1:len(payload) - payload[0]]
