"""The recorder process's backlog: link bytes read from the proxy and not handled yet.

The recorder reads whatever the proxy has sent as soon as it can (a `recv` costs a copy, a
call's recording a hundred times that), so a burst waits here, in this process, rather than
in the proxy: as the bytes came off the socket, in blocks of up to `READ_SIZE`, not as
objects per call or per chunk (a small call is a few hundred bytes of frames). It is then
handled block by block, at the relay's timestamps, however late. The proxy keeps only what
this process has not read yet, and should the proxy be killed, what waits here is still
recorded (the recorder records everything it has received before it stops).

`limit` bounds it in bytes (large bodies count fully; with the writer's queue,
--queue-mb): at the limit the recorder stops
reading, and the proxy holds the rest (see proxy.recorder_out) until it drops bytes. The
recorder skims long before that (recorder.behind).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable

from cri_proxy.model.link import LENGTH, messages

Handler = Callable[[int, memoryview, int, int], None]

READ_SIZE = 64 << 10  # a block: a few hundred small calls, then the socket is read again


class Spool:
    """Blocks read from the socket, oldest first, and their size in bytes."""

    __slots__ = ("blocks", "bytes", "_part")

    def __init__(self) -> None:
        self.blocks: deque[bytes] = deque()
        self.bytes = 0
        self._part = bytearray()  # a message begun in a block already handled

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def read(self, sock: socket.socket, limit: int) -> bool:
        """Reads what the socket holds (a non-blocking one) while under `limit` bytes; False at
        the end of the stream. OSError when the socket fails."""
        blocks = self.blocks
        while self.bytes < limit:
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            blocks.append(data)
            self.bytes += len(data)
        return True

    def handle_next(self, handle: Handler) -> int:
        """Hands each message of the oldest block to `handle(kind, view, start, stop)` (the body
        is `view[start:stop]`, valid during the call), as link.Reader does but without copying
        the block: only a message split between two blocks is put together. Returns the
        block's size (the spool must not be empty)."""
        data = self.blocks.popleft()
        size = len(data)
        self.bytes -= size
        pos = 0
        if self._part:
            pos = self._complete(data, handle)
            if pos < 0:
                return size
        view = memoryview(data)
        try:
            for kind, start, stop in messages(data, pos):
                handle(kind, view, start, stop)
                pos = stop
        finally:
            view.release()
        if pos < size:
            self._part += data[pos:]  # the tail only: a message the next block completes
        return size

    def _complete(self, data: bytes, handle: Handler) -> int:
        """The message begun earlier, completed from `data`: where `data` goes on (-1: it
        did not complete it)."""
        part = self._part
        if len(part) < 4:
            need = 4 - len(part)
            part += data[:need]
            if len(part) < 4:
                return -1
            taken = need
        else:
            taken = 0
        (length,) = LENGTH.unpack_from(part, 0)
        more = 4 + length - len(part)
        part += data[taken:taken + more]
        if len(part) < 4 + length:
            return -1
        view = memoryview(part)
        try:
            handle(part[4], view, 5, 4 + length)
        finally:
            view.release()
        self._part = bytearray()
        return taken + more
