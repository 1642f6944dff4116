"""What the recorder's loop tells the proxy, and asks of the writer between blocks.

`Reports` is the part of the recorder's loop (recorder.loop.Worker, its subclass) that sends
STATS back over the link, at most every STATS_INTERVAL_S and at once after a commit (the
proxy's cue to let go of what it holds), and reads the writer's backlog between spooled
blocks (`Recorder.backlog`: two numbers, not the whole `stats` snapshot, many times a second
in a flood).
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from cri_proxy.model import link as channel
from cri_proxy.recorder.behind import Behind
from cri_proxy.recorder.nowriter import NoWriter
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.tap import ConnectionRecorder

if TYPE_CHECKING:
    from cri_proxy.recorder.telemetry import Telemetry

__all__ = ["QUEUE_MEMORY_BYTES", "STATS_INTERVAL_S", "Reports"]

STATS_INTERVAL_S = 0.1
# The calls waiting for the writer, in bytes, past which no more spooled bytes are handled
# until it has written some: the backlog then waits as bytes in the spool (on disk, see
# recorder.spool), not as calls in memory. At least the writer's batch (queue.BATCH_BYTES),
# so that the writer always has a batch due when handling pauses.
QUEUE_MEMORY_BYTES = 8 << 20


class Reports:
    """STATS to the proxy, the writer's backlog (a base of recorder.loop.Worker)."""

    sock: socket.socket
    recorder: Recorder | NoWriter
    telemetry: Telemetry | None
    behind: Behind
    conns: dict[int, ConnectionRecorder]
    received: int
    _out: bytearray
    _last_stats: float

    def queued_bytes(self) -> int:
        """Bytes waiting for the writer (its share of the budget)."""
        return self.recorder.backlog()[0]

    def writer_full(self) -> bool:
        """Enough calls wait for a working writer: let it write before more are handled. A
        writer that fails is not waited for (its queue fills, and calls are counted lost)."""
        queued, healthy = self.recorder.backlog()
        return queued > QUEUE_MEMORY_BYTES and healthy

    # Back to the proxy ---------------------------------------------------------------------
    def send_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._last_stats + STATS_INTERVAL_S:
            return
        self._last_stats = now
        if len(self._out) < 1 << 16:  # the proxy is not reading: it will get the next one
            stats = self.recorder.stats
            if self.telemetry is not None:
                self.telemetry.tick(stats, now, self.behind.lag)
            pending = stats.queued + sum(len(conn.calls) for conn in self.conns.values())
            self._out += channel.stats_message(stats, self.received, pending, self.recorder.session_id)

    def flush(self) -> None:
        try:
            sent = self.sock.send(self._out, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._out.clear()  # the proxy is gone; nobody to tell
            return
        del self._out[:sent]
