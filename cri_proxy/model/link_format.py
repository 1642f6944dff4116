"""The link's framing: length-prefixed messages and their kinds, the CHUNK header, the lean
form of DATA, and the `Reader` that cuts a byte stream back into messages.

Every message is `<I length><B kind>` followed by `length - 1` bytes of body. What each kind's
body holds, and the typed functions that build and read it, are model.link's, which
re-exports every name here: callers use `link.CHUNK`, `link.Reader` and so on. Apart so the
hot path's pieces (a CHUNK's header, the framing, the Reader) read on one page.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Iterator
from typing import Any, Final


LENGTH: Final = struct.Struct("<I")
CHUNK_HEAD: Final = struct.Struct("<IBIBdd")  # length, kind, conn_id, from_client, wall, monotonic
CHUNK_FIXED: Final = CHUNK_HEAD.size - LENGTH.size  # body bytes before the data, kind included
HEAD: Final = LENGTH.size + 1  # a message's body starts this far from its first byte

# proxy -> recorder
INIT: Final = 0  # pickled Init
CHUNK: Final = 1
OPEN: Final = 2  # _OPEN + upstream (utf-8) [+ NUL + _PEER + process name + executable (utf-8)]
CLOSED: Final = 3  # _CLOSED + reason (utf-8; absent when None)
UPSTREAM: Final = 4  # _CONN + upstream (utf-8)
GAP: Final = 5  # _GAP
CALL: Final = 6  # pickled RecordedCall (the bridge's calls)
SESSION: Final = 7  # JSON object of SessionInfo changes
STOP: Final = 8  # empty: record what is queued, then exit
RELAY: Final = 9  # _RELAY + why the runtime does not answer (utf-8; empty when it does): for /readyz
NOTE: Final = 10  # _NOTE + JSON [upstream_api, [notes]]: what the relay's translation did to a call
# recorder -> proxy
READY: Final = 20  # _READY + why recording does not work yet (utf-8; empty when it does)
ERROR: Final = 21  # utf-8 message: the recorder could not start (--require-recording)
STATS: Final = 22  # _STATS

# why a GAP came (read_gap's fourth field)
GAP_BEHIND: Final = 0  # the recorder fell behind: the proxy dropped bytes
GAP_RESTARTED: Final = 1  # a new recorder joins a connection already under way
GAP_THIN_START: Final = 2  # from here the direction's frames come without DATA (proxy.recorder_out)
GAP_THIN_END: Final = 3  # and from here whole again


# The lean form of CHUNK bytes (proxy/lean.py), used on a link whose recorder needs no message
# bodies (RecordConfig.needs_bodies false): every DATA frame's payload is replaced by this
# summary, in a frame of its own (header: length, type DATA, END_STREAM kept, stream), but
# for a small unpadded frame of one whole message, which goes as it is (lean.PASS_WHOLE) and
# is never of the summary's length.
LEAN_SUMMARY: Final = struct.Struct(">BIQ")  # malformed padding, gRPC messages completed, their bytes
LEAN_DATA_FRAME: Final = struct.Struct(">BHBBIBIQ")


def chunk_head(conn_id: int, from_client: bool, wall: float, mono: float, size: int) -> bytes:
    return CHUNK_HEAD.pack(CHUNK_FIXED + size, CHUNK, conn_id, from_client, wall, mono)


def lean_data(flags: int, stream_id: int, bad: bool, messages: int, size: int) -> bytes:
    """A DATA frame in the lean form: `messages` gRPC messages of `size` bytes (prefixes
    excluded) completed in it, or `bad`: its padding is malformed."""
    return LEAN_DATA_FRAME.pack(0, LEAN_SUMMARY.size, 0, flags, stream_id, bad, messages, size)


def read_lean_data(payload: bytes) -> tuple[bool, int, int]:
    """(malformed padding, messages, bytes) of a lean DATA frame's payload."""
    if len(payload) != LEAN_SUMMARY.size:
        raise ValueError(f"lean DATA frame of {len(payload)} bytes, expected {LEAN_SUMMARY.size}")
    bad, messages, size = LEAN_SUMMARY.unpack(payload)
    return bool(bad), messages, size


def message(kind: int, body: bytes = b"") -> bytes:
    return LENGTH.pack(1 + len(body)) + bytes((kind,)) + body


def pickled(kind: int, value: Any) -> bytes:
    """INIT and CALL only (see the module docstring)."""
    return message(kind, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def unpickled(view: memoryview, start: int, stop: int) -> Any:
    return pickle.loads(view[start:stop])



class Reader:
    """Cuts a byte stream into messages and hands each to `handle(kind, view, start, stop)`,
    where `view[start:stop]` is the body; the view is only valid during the call."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes, handle: Callable[[int, memoryview, int, int], None]) -> None:
        buf = self._buf
        buf += data
        pos = 0
        view = memoryview(buf)
        try:
            for kind, start, stop in messages(buf):
                handle(kind, view, start, stop)
                pos = stop
        finally:
            view.release()
            del buf[:pos]


def messages(buf: bytes | bytearray | memoryview, pos: int = 0) -> Iterator[tuple[int, int, int]]:
    """The whole messages in `buf` from `pos` on, in order: (kind, start, stop) of each body."""
    end = len(buf)
    while pos + 5 <= end:
        (length,) = LENGTH.unpack_from(buf, pos)
        stop = pos + 4 + length
        if stop > end:
            return
        yield buf[pos + 4], pos + 5, stop
        pos = stop
