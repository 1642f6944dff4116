"""HTTP/2's numbers as the relay, the tap and the prober use them (RFC 9113): the client
preface, frame types, flags, error codes and the one setting read.

Apart from the walker (h2.walker) and the frame builders (h2.frames) so that both can name
them; h2.frames re-exports every one, and callers read them as `h2.DATA` etc. from there.
"""

from __future__ import annotations

import struct
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A frame's 9-byte header (RFC 9113 §4.1): length (high byte, low 16 bits), type, flags, stream id
# (its reserved bit included). Every walk unpacks it where it lies; the rewriting relay packs it.
FRAME_HEADER: Final = struct.Struct(">BHBBI")

DATA: Final = 0x0
HEADERS: Final = 0x1
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

FLAG_END_STREAM: Final = 0x1
FLAG_ACK: Final = 0x1
FLAG_END_HEADERS: Final = 0x4
FLAG_PADDED: Final = 0x8
FLAG_PRIORITY: Final = 0x20

ERR_PROTOCOL: Final = 0x1
ERR_CANCEL: Final = 0x8
ERR_COMPRESSION: Final = 0x9
ERR_ENHANCE_YOUR_CALM: Final = 0xB
ERROR_NAMES: Final = {0x0: "NO_ERROR", ERR_PROTOCOL: "PROTOCOL_ERROR", ERR_CANCEL: "CANCEL",
                      ERR_COMPRESSION: "COMPRESSION_ERROR", ERR_ENHANCE_YOUR_CALM: "ENHANCE_YOUR_CALM"}
SETTINGS_HEADER_TABLE_SIZE: Final = 0x1

