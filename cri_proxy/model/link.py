"""The byte format between the proxy and its recorder process, over one unix socketpair.

Every message is `<I length><B kind>` followed by `length - 1` bytes of body. The proxy's hot
path writes only CHUNK messages: a fixed header (connection, direction, wall and monotonic
time) and the bytes the relay forwarded, untouched. Everything else is rare and pickled
(both ends are this package, parent and child).
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from typing import Any, Final

LENGTH: Final = struct.Struct("<I")
CHUNK_HEAD: Final = struct.Struct("<IBIBdd")  # length, kind, conn_id, from_client, wall, monotonic
CHUNK_FIXED: Final = CHUNK_HEAD.size - LENGTH.size  # body bytes before the data, kind included
HEAD: Final = LENGTH.size + 1  # a message's body starts this far from its first byte

# proxy -> recorder
INIT: Final = 0  # pickled (RecordConfig, SessionInfo, log level)
CHUNK: Final = 1
OPEN: Final = 2  # pickled (conn_id, ConnectionInfo)
CLOSED: Final = 3  # pickled (conn_id, monotonic, reason)
UPSTREAM: Final = 4  # pickled (conn_id, upstream)
GAP: Final = 5  # pickled (conn_id, from_client, monotonic)
CALL: Final = 6  # pickled RecordedCall (the bridge's calls)
SESSION: Final = 7  # pickled dict of SessionInfo changes
STOP: Final = 8  # empty: record what is queued, then exit
# recorder -> proxy
READY: Final = 20  # pickled session id
ERROR: Final = 21  # pickled message: the recorder could not start
STATS: Final = 22  # pickled dict of RecorderStats fields


def chunk_head(conn_id: int, from_client: bool, wall: float, mono: float, size: int) -> bytes:
    return CHUNK_HEAD.pack(CHUNK_FIXED + size, CHUNK, conn_id, from_client, wall, mono)


def message(kind: int, value: Any = None) -> bytes:
    body = b"" if value is None else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(1 + len(body)) + bytes((kind,)) + body


class Reader:
    """Cuts a byte stream into messages and hands each to `handle(kind, view, start, stop)`,
    where `view[start:stop]` is the body; the view is only valid during the call."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes, handle: Callable[[int, memoryview, int, int], None]) -> None:
        buf = self._buf
        buf += data
        end = len(buf)
        pos = 0
        view = memoryview(buf)
        try:
            while pos + 5 <= end:
                (length,) = LENGTH.unpack_from(buf, pos)
                stop = pos + 4 + length
                if stop > end:
                    break
                handle(buf[pos + 4], view, pos + 5, stop)
                pos = stop
        finally:
            view.release()
            del buf[:pos]


def value(view: memoryview, start: int, stop: int) -> Any:
    return pickle.loads(view[start:stop])
