"""HTTP/2 framing as far as the relay needs it: frame boundaries, and the few frames it writes.

The frames the proxy itself sends are built here, by hyperframe, the python-hyper project's
well-kept parser, or by `frame()` for the plain ones. The walk over frame boundaries
(`FrameWalker`, h2.walker) and HTTP/2's numbers (h2.constants) live apart and are
re-exported here, so every caller reads the one namespace: `from cri_proxy.h2 import frames as h2`.
"""

from __future__ import annotations

from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

from cri_proxy.h2.constants import (
    CONTINUATION,
    DATA,
    ERR_CANCEL,
    ERR_COMPRESSION,
    ERR_ENHANCE_YOUR_CALM,
    ERR_PROTOCOL,
    ERROR_NAMES,
    FLAG_ACK,
    FLAG_END_HEADERS,
    FLAG_END_STREAM,
    FLAG_PADDED,
    FLAG_PRIORITY,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    SETTINGS_HEADER_TABLE_SIZE,
    WINDOW_UPDATE,
)
from cri_proxy.h2.walker import Frame, FrameError, FrameWalker, header_block_fragment

__all__ = [
    "CONTINUATION", "DATA", "ERR_CANCEL", "ERR_COMPRESSION", "ERR_ENHANCE_YOUR_CALM", "ERR_PROTOCOL", "ERROR_NAMES",
    "FLAG_ACK", "FLAG_END_HEADERS", "FLAG_END_STREAM", "FLAG_PADDED", "FLAG_PRIORITY", "GOAWAY", "HEADERS", "PING",
    "PREFACE", "RST_STREAM", "SETTINGS", "SETTINGS_HEADER_TABLE_SIZE", "WINDOW_UPDATE",
    "Frame", "FrameError", "FrameWalker", "header_block_fragment",
    "frame", "goaway_frame", "grpc_error_frame", "grpc_message_text", "rst_stream_frame", "set_flag",
    "settings_values", "window_update_frame",
]



def settings_values(payload: bytes) -> dict[int, int]:
    """The identifier/value pairs of a SETTINGS frame's payload."""
    return {int.from_bytes(payload[i:i + 2], "big"): int.from_bytes(payload[i + 2:i + 6], "big")
            for i in range(0, len(payload) - 5, 6)}


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame's bytes: the 9-byte header (RFC 9113 §4.1) and `payload`."""
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big") + payload


def grpc_message_text(message: str) -> str:
    """grpc-message as gRPC writes it: percent-encoded outside printable ASCII."""
    from urllib.parse import quote

    return quote(message, safe=" !#$&'()*+,/:;=?@[]~")


def grpc_error_frame(stream_id: int, code: int, message: str) -> bytes:
    """A trailers-only gRPC response ending `stream_id` with status `code`.

    Every field is sent as a never-indexed literal (or a static-table index), so the
    receiver's HPACK dynamic table is untouched and stays in step with the real server's
    encoder, which never sees this frame.
    """
    headers = [(":status", "200"), ("content-type", "application/grpc"),
               ("grpc-status", str(code)), ("grpc-message", grpc_message_text(message))]
    block = Encoder().encode([NeverIndexedHeaderTuple(k, v) for k, v in headers], huffman=False)
    frame = HeadersFrame(stream_id, data=block, flags=["END_HEADERS", "END_STREAM"])
    return bytes(frame.serialize())


def rst_stream_frame(stream_id: int, error_code: int = ERR_CANCEL) -> bytes:
    return bytes(RstStreamFrame(stream_id, error_code=error_code).serialize())


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return bytes(WindowUpdateFrame(stream_id, window_increment=increment).serialize())


def goaway_frame(last_stream_id: int, error_code: int = 0, debug: bytes = b"") -> bytes:
    return bytes(GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code,
                             additional_data=debug).serialize())


def set_flag(raw: bytes, flag: int) -> bytes:
    """A copy of a raw frame with `flag` added to its flags byte."""
    return raw[:4] + bytes([raw[4] | flag]) + raw[5:]
