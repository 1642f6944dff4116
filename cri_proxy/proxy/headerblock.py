"""The request header blocks routing reads: collected frame by frame, checked, bounded.

Routing holds a request's HEADERS and CONTINUATION frames until the block is whole, since
the block decides where the connection goes. A block is bounded as the runtime bounds it:
grpc-go (containerd, CRI-O's gRPC peers) accepts a header list of 16 MiB decoded, and its
HTTP/2 layer (golang.org/x/net/http2, since the CONTINUATION-flood fix for CVE-2023-45288)
closes the connection with GOAWAY PROTOCOL_ERROR once the encoded fragments outgrow that
budget. An encoder never makes a block larger than what it decodes to (each field's size
counts 32 bytes beyond its strings, more than any prefix takes, and Huffman is used only
where it is shorter), so `MAX_BLOCK`, 16 MiB encoded, refuses no block the runtime would
take, and bounds what one connection can make the relay hold.

Before its first request a connection's other frames are held too, to be replayed should
the connection move (proxy.firstcall). A client needs a handful of them (its SETTINGS, a
WINDOW_UPDATE, perhaps a PING and the acknowledgement of the server's SETTINGS); `Early`
bounds them at `MAX_EARLY_FRAMES` frames and `MAX_EARLY_BYTES` bytes, and a client that
sends more (a SETTINGS or PING flood) is answered as grpc-go answers a ping flood: GOAWAY
ENHANCE_YOUR_CALM.

Every breach of the framing rules routing depends on is a connection error (RFC 9113 §5.4.1),
raised as `BadFrame` with the HTTP/2 error code the runtime would send; `refuse` ends the
connection for it, or for a block its HPACK decoder cannot read (COMPRESSION_ERROR), for
routing and the translating request relay alike.
"""

from __future__ import annotations

from typing import Final, Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.hpack_decoder import HPACKDecodingError

MAX_BLOCK: Final = 16 << 20  # encoded bytes held for one header block (see above)
MAX_HEADER_LIST: Final = 16 << 20  # decoded, grpc-go's default MaxHeaderListSize
MAX_EARLY_FRAMES: Final = 256  # frames other than header blocks before the first request (see above)
MAX_EARLY_BYTES: Final = 64 << 10  # and their bytes, frame headers included


class BadFrame(Exception):
    """The client broke a rule of HTTP/2 framing or a bound: the connection must end."""

    what = "the client broke HTTP/2 framing"  # the log line's opening words

    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code


class _Failing(Protocol):
    def fail(self, error_code: int, reason: str) -> None: ...


def too_large(stream_id: int) -> BadFrame:
    """The error for a request header block beyond `MAX_BLOCK`."""
    return BadFrame(h2.ERR_PROTOCOL, f"request header block on stream {stream_id} larger than {MAX_BLOCK} bytes")


def refuse(conn: _Failing, exc: BadFrame | HPACKDecodingError) -> None:
    """End the connection for what the client sent, with GOAWAY and the error the runtime would send."""
    if isinstance(exc, BadFrame):
        conn.fail(exc.error_code, f"{exc.what} ({exc})")
    else:
        conn.fail(h2.ERR_COMPRESSION, f"cannot read the client's request headers ({exc})")


class TooEarly(BadFrame):
    """More frames before the first request than `Early` holds."""

    what = "the client sent too much before its first request"


class Early:
    """The count of what a connection sent before its first request, besides header blocks."""

    __slots__ = ("frames", "size")

    def __init__(self) -> None:
        self.frames = 0
        self.size = 0

    def add(self, frame: h2.Frame) -> None:
        self.frames += 1
        self.size += 9 + frame.length
        if self.frames > MAX_EARLY_FRAMES or self.size > MAX_EARLY_BYTES:
            raise TooEarly(h2.ERR_ENHANCE_YOUR_CALM,
                           f"more than {MAX_EARLY_FRAMES} frames or {MAX_EARLY_BYTES} bytes of frames: the last "
                           f"of type {frame.type} (a flood?)")


class HeaderBlock:
    """The client's header block being read, if any (one at a time: RFC 9113 §6.10)."""

    __slots__ = ("frames", "head", "size", "stream_id")

    def __init__(self) -> None:
        self.frames: list[bytes] = []  # raw frames, to forward once the block is read
        self.head = b""  # the HEADERS frame's HPACK bytes (CONTINUATIONs carry nothing else)
        self.size = 0
        self.stream_id = 0

    def __bool__(self) -> bool:
        return bool(self.frames)

    def check(self, frame: h2.Frame) -> None:
        """A frame other than a header frame: refused in the middle of a block."""
        if self.frames:
            raise BadFrame(h2.ERR_PROTOCOL, f"frame of type {frame.type} on stream {frame.stream_id} inside the "
                                            f"header block of stream {self.stream_id}")

    def add(self, frame: h2.Frame) -> bool:
        """Take a HEADERS or CONTINUATION frame; True when it ends the block."""
        if frame.stream_id == 0:
            raise BadFrame(h2.ERR_PROTOCOL, f"{_name(frame)} frame on stream 0")
        if frame.type == h2.HEADERS:
            if self.frames:
                raise BadFrame(h2.ERR_PROTOCOL, f"HEADERS on stream {frame.stream_id} inside the header block "
                                                f"of stream {self.stream_id}")
            self.stream_id = frame.stream_id
        elif not self.frames or frame.stream_id != self.stream_id:
            raise BadFrame(h2.ERR_PROTOCOL, f"CONTINUATION on stream {frame.stream_id} without a header block "
                                            "open on that stream")
        self.size += frame.length
        if self.size > MAX_BLOCK:
            raise too_large(self.stream_id)
        if frame.type == h2.HEADERS:
            try:
                self.head = h2.header_block_fragment(frame)
            except h2.FrameError as exc:
                raise BadFrame(h2.ERR_PROTOCOL, str(exc)) from None
        self.frames.append(frame.raw or b"")
        return bool(frame.flags & h2.FLAG_END_HEADERS)

    def take(self) -> tuple[int, list[bytes], bytes]:
        """The finished block: its stream, its raw frames, its HPACK bytes; and start afresh."""
        fragment = self.head + b"".join(raw[9:] for raw in self.frames[1:]) if len(self.frames) > 1 else self.head
        taken = self.stream_id, self.frames, fragment
        self.frames, self.head, self.size, self.stream_id = [], b"", 0, 0
        return taken


def _name(frame: h2.Frame) -> str:
    return "HEADERS" if frame.type == h2.HEADERS else "CONTINUATION"
