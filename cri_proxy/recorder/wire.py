"""gRPC on HTTP/2, as the tap reads it: length-prefixed messages and header lists.

`MessageReader` cuts one direction of one call into gRPC messages (1-byte compressed flag,
4-byte big-endian length, bytes) across DATA frames, however the frames split them.
`share_bodies` lets calls hold one copy of a large body repeated from call to call.
`split_headers` turns a decoded header list into pseudo-headers and metadata.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Final
from urllib.parse import unquote

from cri_proxy.h2 import frames as h2
from cri_proxy.model.call import Direction, Message, Metadata, RecordedCall
from cri_proxy.recorder.bodies import BodyMemo

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

    A message cut by frame boundaries is kept as the DATA payloads that carry it (bytes the
    frame walker has already cut out of the relayed chunk) and joined once, when its last
    byte arrives: one copy of the body, not a buffer grown frame by frame and then copied
    again into the message's bytes (for a 1 MB reply, 64 frames of 16 KB).
    """

    __slots__ = ("direction", "count", "_prefix", "_parts", "_need", "_compressed", "stopped")

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.count = 0
        self._prefix = b""  # a prefix cut by a frame boundary
        self._parts: list[bytes] | None = None  # a message cut by a frame boundary: its pieces so far
        self._need = 0  # bytes still missing from _parts
        self._compressed = False
        self.stopped: str | None = None  # why later bytes are not read

    def stop(self, why: str) -> None:
        """Bytes of this direction went missing: whatever comes next cannot be cut into
        the right messages (and could splice a secret into a harmless-looking one)."""
        self._parts, self._prefix, self._need = None, b"", 0
        self.stopped = why

    def feed(self, data: bytes, call: RecordedCall, offset: float) -> None:
        """Read a DATA frame's content (padding already removed)."""
        if self.stopped is not None:
            return
        pos, end = 0, len(data)
        while pos < end:
            if self._parts is not None:
                take = min(self._need, end - pos)
                self._parts.append(data[pos:pos + take])  # the whole payload: no copy
                pos += take
                self._need -= take
                if not self._need:
                    parts, self._parts = self._parts, None
                    self._emit(call, b"".join(parts), self._compressed, offset)
                continue
            if self._prefix or end - pos < 5:
                take = min(5 - len(self._prefix), end - pos)
                self._prefix += data[pos:pos + take]
                pos += take
                if len(self._prefix) < 5:
                    return
                head, self._prefix = self._prefix, b""
            else:
                head = data[pos:pos + 5]
                pos += 5
            length = int.from_bytes(head[1:5], "big")
            if length <= end - pos:
                self._emit(call, data[pos:pos + length], head[0] != 0, offset)
                pos += length
            else:
                self._parts = [data[pos:end]]
                self._need = length - (end - pos)
                self._compressed = head[0] != 0
                pos = end

    def _emit(self, call: RecordedCall, body: bytes, compressed: bool, offset: float) -> None:
        call.add_message(Message(self.direction, self.count, offset, body, compressed))
        self.count += 1

    def unfinished(self) -> str | None:
        """What is left of a message cut short, if any, for a note."""
        if self.stopped is not None:
            return f"{self.direction.value} messages after {self.stopped} are not recorded"
        if self._parts is not None:
            have = sum(map(len, self._parts))
            return f"{self.direction.value} message cut short ({have} of {have + self._need} bytes)"
        if self._prefix:
            return f"{self.direction.value} message cut short (inside its 5-byte prefix)"
        return None


SHARE_MIN_BYTES = 4096  # smaller bodies cost little memory each: not worth a comparison


def share_bodies(memo: BodyMemo[None], call: RecordedCall, start: int) -> None:
    """The call's messages from `start` on, each large one replaced by the equal body `memo`
    saw last for its kind (method, direction), if any; the others become the last of theirs.

    So the calls queued for the writer hold one copy of a reply repeated call after call (a
    1 MB stats reply: one, not one per call of a batch), and the writer's own memo
    (recorder.bodies, on the pipeline's side) knows each of them by identity, without
    comparing their bytes again.
    """
    for message in call.messages[start:]:
        data = message.data
        if len(data) >= SHARE_MIN_BYTES:
            kind = (call.path, message.direction is Direction.REQUEST)
            known = memo.find(kind, data)
            if known is not None:
                message.data = known[0]
            else:
                memo.add(kind, data, None)


def data_content(frame: h2.Frame) -> bytes | None:
    """A DATA frame's content without its padding; None when the padding is malformed."""
    payload = frame.payload
    if payload is None:
        return None
    if not frame.flags & h2.FLAG_PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        return None
    return payload[1:len(payload) - payload[0]]


def header_text(raw: bytes, name: str | None) -> str:
    """A header name (`name` None) or value as text: what metadata holds.

    gRPC metadata is ASCII; anything else is kept readable. gRPC's C core sends `-bin`
    values as raw bytes after a 0 byte when both ends advertise "true binary metadata"
    (SETTINGS 0xFE03); those become base64, unpadded as gRPC writes it, so a value reads
    the same whichever way it travelled.
    """
    if raw[:1] == b"\x00" and name is not None and name.endswith("-bin"):
        return b64encode(raw[1:]).decode().rstrip("=")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def split_headers(headers: list[tuple[str, str]]) -> tuple[dict[str, str], Metadata, int]:
    """Pseudo-headers by name, and the rest: metadata (`-bin` values as base64 text), and
    the metadata's size (names and values)."""
    pseudo: dict[str, str] = {}
    metadata: Metadata = []
    size = 0
    for field in headers:
        if field[0][:1] == ":":
            pseudo[field[0]] = field[1]
        else:
            metadata.append(field)
            size += len(field[0]) + len(field[1])
    return pseudo, metadata, size


# What one call stores of each header list (request metadata, response metadata, trailers).
# gRPC's own limits are far lower (8-16 KiB by default in C core); a runtime taking up to 16 MiB
# (grpc-go) would let a few kilobytes of HPACK references inflate to megabytes per call.
MAX_METADATA_ENTRIES: Final = 256
MAX_METADATA_BYTES: Final = 64 << 10  # name + value + 32 per field, as HPACK counts a header list


def cap_metadata(metadata: Metadata, what: str, size: int) -> tuple[Metadata, str | None]:
    """The fields kept (the first ones, within both limits) and a note when some were cut.
    `size` is the list's (split_headers'), without the 32 per field."""
    if len(metadata) <= MAX_METADATA_ENTRIES and size + 32 * len(metadata) <= MAX_METADATA_BYTES:
        return metadata, None  # nearly every call
    kept, size = 0, 0
    for name, value in metadata:
        field_size = len(name) + len(value) + 32
        if kept == MAX_METADATA_ENTRIES or size + field_size > MAX_METADATA_BYTES:
            break
        kept, size = kept + 1, size + field_size
    if kept == len(metadata):
        return metadata, None
    total = sum(len(n) + len(v) + 32 for n, v in metadata)
    return metadata[:kept], (f"{what} cut to its first {kept} of {len(metadata)} fields "
                             f"({size:,} of {total:,} bytes)")


def apply_status(call: RecordedCall, trailers: Metadata) -> None:
    """Take grpc-status and grpc-message (percent-decoded) from a trailer list."""
    for name, value in trailers:
        if name == "grpc-status":
            try:
                call.status_code = int(value)
            except ValueError:
                call.notes.append(f"unreadable grpc-status {value!r}")
        elif name == "grpc-message":
            call.status_message = unquote(value, errors="replace") if "%" in value else value
