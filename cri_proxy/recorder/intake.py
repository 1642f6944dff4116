"""The recorder process's reading thread: the proxy's bytes into the spool, whatever the
recorder is busy with.

Recording a call takes the recorder's one thread for a while (decoding a new 1 MB body, a
batch of rows written to SQLite: tens to hundreds of milliseconds), and a proxy relaying
1 MB replies ships several hundred MB a second: were the socket read only between those
steps, the proxy would hold what the recorder had not read (up to its outbox's limit, see
proxy.recorder_out), as its own resident memory, and drop the rest. This thread only reads:
a blocking recv of up to 4 MB (the socket's buffer) and its write to the spill file, each of
which releases the interpreter's lock, so it takes the lock back twice per read, whatever the
recording does meanwhile (CPython hands it over within its switch interval, 5 ms), which
keeps the socket drained at several hundred MB a second; the backlog waits in the spool
(recorder.spool: mostly on disk), up to the budget. The socket stays blocking: the
recorder's own thread sends its reports with MSG_DONTWAIT.

It stops at the end of the stream (the proxy is gone), when the socket fails, or when told
(a shutdown of the socket's reading side wakes a recv that waits).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from cri_proxy.recorder.spool import READ_SIZE, Spool

log = logging.getLogger(__name__)

POLL_S = 0.01  # how often a full spool is looked at again, should the wake-up be missed
# After a read that took less than a block, the next waits this long: a trickle of small
# calls then costs a few hundred reads (and hand-overs of the interpreter's lock) a second,
# not one per call, and the socket's 4 MB hold far more than what comes meanwhile.
GATHER_S = 0.002
IDLE_S = 1  # a recv that waits this long returns, so that a spill file read to its end is emptied


class Intake:
    """Reads `sock` into `spool` while under `room()` bytes, on a thread of its own."""

    def __init__(self, sock: socket.socket, spool: Spool, room: Callable[[], int], gather_s: float = GATHER_S) -> None:
        self.sock = sock
        self.gather_s = gather_s  # the wait after a short read (GATHER_S; longer when only metrics are fed)
        # SO_RCVTIMEO, not a Python timeout: that would make the socket non-blocking for the
        # recorder's thread too, and cost a poll() (and a wait for the lock) per read.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", IDLE_S, 0))
        self.spool = spool
        self.room = room
        self.arrived = threading.Event()  # set after each read: the recorder has work
        self.handled = threading.Event()  # set by the recorder after it handled some: room again
        self.waiting = False  # for room: only then does the recorder set `handled` (an Event costs a lock)
        self.ended: str | None = None  # why it stopped reading: the proxy is gone, or the socket failed
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="recorder-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops reading (within POLL_S) and waits for the thread."""
        self._stop = True
        self.handled.set()
        if self._thread.is_alive():
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # not connected any more: the recv has returned already
            self._thread.join()

    def _run(self) -> None:
        spool = self.spool
        try:
            while not self._stop:
                limit = self.room()
                if spool.bytes >= limit:  # at the budget: the proxy holds the rest meanwhile
                    self.waiting = True
                    self.handled.wait(POLL_S)
                    self.handled.clear()
                    self.waiting = False
                    continue
                spool.tidy()
                try:
                    got = spool.read_once(self.sock, limit)
                except BlockingIOError:  # nothing for IDLE_S
                    continue
                self.arrived.set()
                if not got:
                    if not self._stop:
                        self._end("the proxy is gone")
                    return
                if got < READ_SIZE:
                    time.sleep(self.gather_s)
        except OSError as exc:
            if not self._stop:
                self._end(f"the proxy's socket failed ({exc})")
        except Exception:  # a bug here must not leave the recorder waiting for bytes forever
            log.exception("the recorder's reading thread failed")
            self._end("the reading thread failed")

    def _end(self, why: str) -> None:
        self.ended = why
        self.arrived.set()
