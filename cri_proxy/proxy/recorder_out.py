"""The way out to the recorder process (see recorder_link): relayed chunks, buffered and sent.

On the relay's path a chunk costs one header and one list append (two for the client's:
its reference is kept until acknowledged, see recorder_loss); the bytes go out in one
`sendmsg` per 20 ms or 256 KiB, and the socket never blocks the loop. What the child has not
taken yet waits here, up to a quarter of `--queue-mb` (the child reads at once into its own
backlog, recorder.spool, so bytes wait here only while it is stalled or at its budget).
Beyond the limit (it skims long before that, see recorder.behind) chunks are dropped rather
than waited for: the child is told where bytes are missing (GAP), resuming at a frame
boundary once the buffer is down to half, and records the affected connection's calls as
unparsed, since the lost bytes may have carried HPACK state; the episode is logged.
The calls that began in the dropped client bytes (request HEADERS frames, walked from the
first frame boundary dropped) are counted and handed over with the GAP, as lost.

What the outbox does past its limit (thinning, dropping, GAPs) is recorder_behind's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

from cri_proxy.h2 import frames as h2
from cri_proxy.model import link
from cri_proxy.proxy.recorder_behind import Behind
from cri_proxy.proxy.recorder_loss import Unacked

log = logging.getLogger(__name__)

_IOV_MAX = 512
# The chunks go out together, at most this long after the first of them, or as soon as
# SEND_BYTES wait (large replies stream on while still in the caches: 1 MiB cost the relay
# more system time in sendmsg than it saved): per 20 ms one sendmsg, timer and wake-up of the
# recorder's reading thread (every 2 ms cost the relay about 5,000 instructions a call more at
# one caller). Chunks are stamped as taken: only the recording trails, by less than its flush
# interval (`send_every`: what a kill -9 of the proxy loses). A lean link's recorder reads 20 ms
# at a time anyway (recorder.loop LEAN_GATHER_S).
SEND_EVERY_S = 0.02
SEND_BYTES = 256 << 10
# link.chunk_head inline: a CHUNK's header, packed straight from the clocks (the relay's path),
# its kind, connection and direction as one prefix made once per connection (`prefix`): the
# same bytes as link.CHUNK_HEAD, two fields fewer to pack per chunk.
_HEAD = struct.Struct("<I6sdd")
_PREFIX = struct.Struct("<BIB")
_head, _CHUNK, _FIXED, _HEAD_SIZE = _HEAD.pack, link.CHUNK, link.CHUNK_FIXED, link.CHUNK_HEAD.size
_wall, _mono = time.time, time.monotonic
def send_every(flush_interval_s: float) -> float:
    """How long chunks gather in the outbox: SEND_EVERY_S, or a fifth of the recorder's flush
    interval when that is shorter, so that what a kill -9 of the proxy loses stays within it."""
    return min(SEND_EVERY_S, flush_interval_s / 5)


def prefix(conn_id: int, from_client: bool) -> bytes:
    """What Outbox.ship takes for a connection's direction: its chunks' fixed header fields."""
    return _PREFIX.pack(_CHUNK, conn_id, from_client)


def buffer_bytes(queue_mb: int) -> int:
    """What the proxy holds for its recorder process: a quarter of --queue-mb. The recorder
    holds the backlog itself (recorder.spool) and reads the socket on a thread of its own
    (recorder.intake), so this is for the moments it gets no CPU or no interpreter lock: every
    MB here is the relay's resident memory (half of --queue-mb was a third of its peak)."""
    return (queue_mb << 20) // 4


class Outbox(Behind):
    """The bytes on their way to one recorder process, bounded by `limit` bytes."""

    def __init__(self, limit: int, loop: Callable[[], asyncio.AbstractEventLoop],
                 died: Callable[[str], None]) -> None:
        self.every = SEND_EVERY_S  # how long chunks gather before they go out
        self.sock: socket.socket | None = None
        self.down = False  # no child takes the bytes (detached until restart)
        self.when_down: Callable[[int, bool, bytes, bool], None] | None = None  # what a chunk does then
        self._loop = loop  # the relay's loop, once it runs
        self._died = died  # sending failed: the child is gone
        self.out: list[bytes] = []
        self.pending = 0  # bytes in out
        self.unacked = Unacked()
        self._scheduled = False
        self._writing = False  # waiting for the socket to take more
        self.gapped: set[tuple[int, bool]] = set()  # (conn, from_client) missing bytes since
        self.joined: set[tuple[int, bool]] = set()  # of those, the ones open before a restart
        self.gap_since: float | None = None
        self.dropped = 0  # bytes dropped in the current episode
        self.gap_episodes = 0
        self._walkers: dict[int, h2.FrameWalker] = {}  # per gapped connection: the client's dropped frames
        self._gap_calls: dict[int, int] = {}  # the calls they began
        self._thin: dict[tuple[int, bool], h2.FrameWalker] = {}  # thinned directions, walked from a boundary
        self.set_limit(limit)

    def set_limit(self, limit: int, send_bytes: int = SEND_BYTES) -> None:
        self.limit = limit
        self.thin_limit = limit + limit // 4  # past it even a thinned direction is dropped
        self.early = min(limit // 2, send_bytes)  # past it what waits is sent before the timer (and the limit)
        self._settle()

    def _settle(self) -> None:
        """The one threshold a chunk is tested against (`ship`): `early`, or -1 while a
        direction is gapped or thinned or no child takes the bytes. Set after every change of those."""
        self._fast = -1 if self.gapped or self._thin or self.down else self.early

    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.pending += len(data)
        self.unacked.shipped += len(data)
        self.wake()

    def chunk(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> None:
        self.ship(conn_id, from_client, _PREFIX.pack(_CHUNK, conn_id, from_client), data, boundary)

    def ship(self, conn_id: int, from_client: bool, prefix: bytes, data: bytes, boundary: bool) -> None:
        """chunk() with the direction's `prefix` made once (the taps' partials: the relay's path)."""
        if self.pending > self._fast:  # SEND_BYTES wait, behind, catching up, down: rare
            held = self._rare(conn_id, from_client, data, boundary)
            if held is None:
                return
            data, boundary = held
        size = len(data)
        out = self.out
        out.append(_head(_FIXED + size, prefix, _wall(), _mono()))
        out.append(data)
        size += _HEAD_SIZE
        self.pending += size
        unacked = self.unacked
        unacked.shipped += size
        if from_client:
            unacked.chunks.append((unacked.shipped, conn_id, boundary, data))
        if not self._scheduled:
            self.wake()

    def _rare(self, conn_id: int, from_client: bool, data: bytes, boundary: bool) -> tuple[bytes, bool] | None:
        """The chunk, thinned, as it is (after a GAP or a send), or None when it is not sent."""
        try:
            key = (conn_id, from_client)
            if not self.down and self.pending <= self.limit and key not in self.gapped and key not in self._thin:
                if self.pending > self.early and not self._writing:
                    self._drain()  # SEND_BYTES wait: they go now, not at the timer
                if not self.down:  # else sending found the child gone
                    return data, boundary
            if self.down:
                if self.when_down is not None:
                    self.when_down(conn_id, from_client, data, boundary)
                return None
            return self._held_back(key, data, boundary)
        finally:
            self._settle()

    def forget(self, conn_id: int) -> None:
        """The connection closed: the calls its dropped bytes began are handed over now."""
        self._walkers.pop(conn_id, None)
        if self._thin:
            self._thin.pop((conn_id, True), None)
            self._thin.pop((conn_id, False), None)
        if calls := self._gap_calls.pop(conn_id, 0):
            self.send(link.gap_message(conn_id, True, time.monotonic(), link.GAP_BEHIND, calls))
        self.joined.discard((conn_id, True))
        self.joined.discard((conn_id, False))
        if self.gapped:
            self.gapped.discard((conn_id, True))
            self.gapped.discard((conn_id, False))
            self._episode_over()
        self._settle()

    def wake(self) -> None:
        if self._scheduled or self._writing:
            return
        self._scheduled = True
        self._loop().call_later(self.every, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self._drain()

    def _drain(self) -> None:
        """Send what waits, as far as the socket takes it (then again once it is writable)."""
        sock = self.sock
        if sock is None:
            return
        out = self.out
        while out:
            batch = out[:_IOV_MAX]
            try:
                sent = sock.sendmsg(batch)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._died(f"sending to it failed: {exc}")
                return
            size = sum(map(len, batch))
            if sent < size:
                self._consume(sent)
                if not self._writing:
                    self._writing = True
                    self._loop().add_writer(sock.fileno(), self.flush)
                return
            del out[:len(batch)]
            self.pending -= size
        if self._writing:
            self._writing = False
            self._loop().remove_writer(sock.fileno())

    def _consume(self, sent: int) -> None:
        out = self.out
        self.pending -= sent
        i = 0
        while sent and sent >= len(out[i]):
            sent -= len(out[i])
            i += 1
        del out[:i]
        if sent:
            out[0] = out[0][sent:]

    def detach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Off the event loop, and nothing more to send (the child is gone, or stopping)."""
        if loop is not None and self.sock is not None and self._writing:
            loop.remove_writer(self.sock.fileno())
        self._writing = False
        self._scheduled = False
        self.out.clear()
        self.pending = 0
        self.down = True
        self._settle()

    def restart(self, sock: socket.socket, live: list[int]) -> None:
        """A new child on `sock`: the live connections are gapped, to be followed from their
        next frame boundary on (their HPACK state died with the old one)."""
        self.sock = sock
        self.down = False
        self.unacked = Unacked()
        self.gap_since, self.dropped = None, 0
        self.gapped = {(conn_id, from_client) for conn_id in live for from_client in (True, False)}
        self.joined = set(self.gapped)
        self._walkers.clear()
        self._gap_calls.clear()
        self._thin.clear()  # gapped instead: the new child follows from a boundary
        self._settle()
