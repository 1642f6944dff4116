"""The recorder process's backlog: link bytes read from the proxy and not handled yet.

The recorder reads whatever the proxy has sent as soon as it can (a `recv` costs a copy, a
call's recording a hundred times that), so a burst waits here, in this process, rather than
in the proxy: as the bytes came off the socket, in blocks of up to `READ_SIZE`, not as
objects per call or per chunk (a small call is a few hundred bytes of frames). It is then
handled block by block, at the relay's timestamps, however late. The proxy keeps only what
this process has not read yet, and should the proxy be killed, what waits here is still
recorded (the recorder records everything it has received before it stops).

Only the first `MEMORY_BYTES` wait in memory. Past that, with a spill file (an unlinked
temporary file beside the database, see `spill_file`), later bytes are appended to the file
and read back in order once the memory's blocks are handled: a flood of 1 MB replies then
costs the page cache, which the kernel writes back and reclaims under pressure, rather than
this process's resident memory (issue 16: 64 MB of backlog was most of the recorder's peak).
The file is emptied (truncated) each time it has been read to its end, so it takes disk
space only while the recorder is behind, up to `limit`. Should writing it fail (a full
disk), the bytes stay in memory instead, in order, and the file is no longer used.

`limit` bounds it in bytes, memory and file together (large bodies count fully; with the
writer's queue, --queue-mb): at the limit the recorder stops reading, and the proxy holds
the rest (see proxy.recorder_out) until it drops bytes. The recorder skims long before that
(recorder.behind).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable

from cri_proxy.model.link import LENGTH, messages
from cri_proxy.recorder.squeeze import Squeezer

log = logging.getLogger(__name__)

# A handler that returns True asks for a pause: the rest of the block is handed on next time.
Handler = Callable[[int, memoryview, int, int], "bool | None"]

READ_SIZE = 64 << 10  # a block: a few hundred small calls, then the socket is read again
MEMORY_BYTES = 4 << 20  # the backlog kept in memory; the rest goes to the spill file
READ_BACK = 1 << 20  # a block read back from the file: few messages cut between two blocks
SPILL_READ = 4 << 20  # one recv into the spill buffer (one write to the file): the socket's buffer


def spill_file(directory: str | None) -> int | None:
    """An unlinked temporary file in `directory` (O_TMPFILE: it never has a name, so nothing
    is left behind however this process ends), as a file descriptor; None when there is no
    directory or the file cannot be made there (the backlog then stays in memory)."""
    if directory is None:
        return None
    try:
        try:
            return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.EOPNOTSUPP):
                raise
            # A kernel or file system without O_TMPFILE: a name, unlinked at once.
            fd, name = tempfile.mkstemp(dir=directory, prefix=".cri-proxy-spool-")
            os.unlink(name)
            return fd
    except OSError as exc:
        log.warning("cannot keep the recorder's backlog on disk in %s (%s): it stays in memory", directory,
                    exc.strerror or exc)
        return None


class Spool:
    """Blocks read from the socket, oldest first, and their size in bytes (memory and file).

    One thread may read (`read`) while another handles (`handle_next`): the state they share
    changes under `lock`, the socket and file calls happen outside it. Only the reading side
    writes the file, and empties it (`tidy`) once the handling side has read it to its end.
    """

    __slots__ = ("_after", "_buffer", "_fd", "_have", "_head", "_length", "_part", "_rest", "_tail", "_writable",
                 "blocks", "bytes", "lock", "memory", "squeezer")

    def __init__(self, fd: int | None = None, memory: int = MEMORY_BYTES, squeezer: Squeezer | None = None) -> None:
        """`fd`: the spill file (spill_file), owned from now on; None keeps it all in memory.
        `squeezer`: what is read goes through it (recorder.squeeze: known bodies as references),
        and `bytes` counts what it keeps."""
        self.squeezer = squeezer
        self.blocks: deque[bytes] = deque()  # in memory, before what the file holds
        self.bytes = 0
        self.memory = memory
        self.lock = threading.Lock()
        # A message begun in a block already handled: its pieces (views of blocks, which never
        # change), their size, and its length once its prefix is whole (-1 before).
        self._part: list[bytes | memoryview] = []
        self._have = 0
        self._length = -1
        self._fd = fd
        self._writable = fd is not None  # False once a write to it failed (still read back)
        self._head = self._tail = 0  # the file's unread bytes: [head, tail)
        self._after: deque[bytes] = deque()  # in memory after the file's (it failed to take them)
        self._buffer: bytearray | None = None  # the spill's recv buffer (the reading side's)
        self._rest: tuple[memoryview, int] | None = None  # a block its handler paused in, and where

    def __bool__(self) -> bool:
        return self.bytes > 0 or self._rest is not None

    @property
    def spilled(self) -> int:
        """Bytes waiting in the spill file."""
        return self._tail - self._head

    def read(self, sock: socket.socket, limit: int) -> bool:
        """Reads what a non-blocking socket holds while under `limit` bytes; False at the end
        of the stream. OSError when the socket fails."""
        try:
            while self.bytes < limit:
                if not self.read_once(sock, limit):
                    return False
        except BlockingIOError:
            pass
        return True

    def read_once(self, sock: socket.socket, limit: int) -> int:
        """One read of up to a block (SPILL_READ into the file): the bytes read, 0 at the end of the
        stream. BlockingIOError (or TimeoutError) when there is nothing to read yet."""
        if self._writable and (self._tail > self._head or self.bytes >= self.memory):
            return self._spill(sock, limit - self.bytes)
        data = sock.recv(READ_SIZE)
        got = len(data)
        if self.squeezer is not None and data:
            squeezed = self.squeezer.squeeze(data, got)
            if squeezed is not None:
                data = b"".join(squeezed)
        if data:
            with self.lock:
                (self._after if self._tail > self._head or self._after else self.blocks).append(data)
                self.bytes += len(data)
        return got

    def _spill(self, sock: socket.socket, room: int) -> int:
        """One recv into the spill buffer, appended to the file: the bytes read."""
        fd = self._fd
        assert fd is not None
        if self._buffer is None:
            self._buffer = bytearray(SPILL_READ)
        self.tidy()
        with memoryview(self._buffer) as view:
            got = sock.recv_into(view, min(SPILL_READ, max(room, READ_SIZE)))
            squeezed = None if self.squeezer is None or not got else self.squeezer.squeeze(self._buffer, got)
            kept = view[:got] if squeezed is None else memoryview(b"".join(squeezed))
            size = len(kept)
            done = 0
            try:
                while done < size:
                    done += os.pwrite(fd, kept[done:], self._tail + done)
            except OSError as exc:
                log.warning("the recorder's backlog file failed (%s): the backlog stays in memory from now on",
                            exc.strerror or exc)
                self._writable = False
            with self.lock:
                self._tail += done
                if done < size:
                    self._after.append(bytes(kept[done:]))
                self.bytes += size
            kept.release()
        return got

    def tidy(self) -> None:
        """The reading side: once the file has been read to its end, it is emptied (its disk
        space back at once) and written from its start again."""
        if self._tail and self._head == self._tail:
            with self.lock:
                self._head = self._tail = 0
            if self._fd is not None:
                os.ftruncate(self._fd, 0)

    def close(self) -> None:
        """Gives the spill file back (what it still holds is not read any more)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._writable = False

    def _next_block(self) -> bytes:
        """The oldest block: from memory, else from the file (a new bytes object each time: the
        tap may keep views of it, see `handle_next`), else what came after the file (in memory:
        it failed to take them)."""
        with self.lock:
            if not self.blocks and self._tail == self._head:
                self.blocks, self._after = self._after, self.blocks
            if self.blocks:
                data = self.blocks.popleft()
                self.bytes -= len(data)
                return data
            head, tail = self._head, self._tail
        assert self._fd is not None and tail > head
        data = os.pread(self._fd, min(READ_BACK, tail - head), head)
        if not data:
            raise OSError(f"the recorder's backlog file ended at {head} of {tail} bytes")
        with self.lock:
            self._head += len(data)
            self.bytes -= len(data)
        return data

    def handle_next(self, handle: Handler) -> int:
        """Hands each message of the oldest block to `handle(kind, view, start, stop)` (the body
        is `view[start:stop]`), as link.Reader does but without copying the block: only a
        message split between two blocks is put together, once. The memory a view shows never
        changes (blocks are bytes objects, never reused), so `handle` may keep views of it
        rather than copies. Returns the block's size (the spool must not be empty); 0 when it
        goes on with a block `handle` paused in (by returning True: a squeezed block holds
        thousands of calls, recorder.squeeze, more than the writer's queue should take at once)."""
        if self._rest is not None:
            (view, pos), self._rest = self._rest, None
            size = 0
        else:
            data = self._next_block()
            size = len(data)
            view = memoryview(data)
            pos = 0
            if self._part:
                pos = self._complete(view, handle)
                if pos < 0:
                    return size
        end = len(view)
        for kind, start, stop in messages(view, pos):
            pos = stop
            if handle(kind, view, start, stop) and stop < end:
                self._rest = (view, stop)
                return size
        if pos < end:
            self._keep(view[pos:])  # the tail only: a message the next block completes
        return size

    def _keep(self, piece: memoryview) -> None:
        """A piece of the message split between blocks; its length once the prefix is whole."""
        self._part.append(piece)
        self._have += len(piece)
        if self._length < 0 and self._have >= 4:
            first = self._part[0]
            (self._length,) = LENGTH.unpack_from(first if len(first) >= 4 else b"".join(self._part))

    def _complete(self, data: memoryview, handle: Handler) -> int:
        """The message begun earlier, completed from `data` (its pieces joined: the one copy):
        where `data` goes on (-1: it did not complete it)."""
        taken = 0
        if self._length < 0:
            taken = min(4 - self._have, len(data))
            self._keep(data[:taken])
            if self._length < 0:
                return -1
        more = min(4 + self._length - self._have, len(data) - taken)
        self._keep(data[taken:taken + more])
        if self._have < 4 + self._length:
            return -1
        whole = b"".join(self._part)
        self._part, self._have, self._length = [], 0, -1
        handle(whole[4], memoryview(whole), 5, len(whole))
        return taken + more
