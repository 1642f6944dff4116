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

A direction that passes the limit at a frame boundary is thinned instead (issue 16: one gap
made the rest of a flooded connection unparsed): from that boundary its frames go on without
DATA (each DATA frame becomes an empty marker with its stream and END_STREAM), so every
header block reaches the child and its HPACK state stays in step; the child records the calls
of that time without that direction's messages (`GAP_THIN_START`, `GAP_THIN_END`). Thinned
bytes are a few dozen a call, but a child that takes nothing would still let them grow: past
a quarter more than the limit the direction is dropped and gapped as above.
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
# What a thinned direction still sends: everything the child's tap reads but DATA.
_THIN_KEEP = frozenset({h2.HEADERS, h2.CONTINUATION, h2.RST_STREAM, h2.SETTINGS, 0x5, h2.GOAWAY})
# A DATA frame left out becomes an empty PADDED one, which no peer sends (PADDED needs a pad
# length byte): the child's tap knows it as such (recorder.tap `thin`).
_LEFT_OUT = h2.FLAG_PADDED


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


class Outbox:
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

    def _held_back(self, key: tuple[int, bool], data: bytes, boundary: bool) -> tuple[bytes, bool] | None:
        """Over the limit or catching up: the chunk thinned, or as it is once the GAP is said, or
        None when it is dropped."""
        try:
            thin = self._thinned(key, data, boundary)
        except Exception:  # a bug here must not reach the relay's path: drop, as before thinning
            log.exception("conn %d: the chunk could not be thinned; dropping it", key[0])
            self._thin.pop(key, None)
            thin = None
        if thin is not None:
            return (thin, True) if thin else None  # whole frames only
        if not self._resume(key, boundary):
            self.dropped += len(data)
            if key[1]:
                self._count(key[0], data, boundary)
            return None
        return data, boundary

    def _thinned(self, key: tuple[int, bool], data: bytes, boundary: bool) -> bytes | None:
        """A chunk of a thinned direction: its frames without DATA (b"" when none is left), the
        chunk itself once the child has caught up, or None for the dropping path."""
        walker = self._thin.get(key)
        if walker is None:
            if not boundary or key in self.gapped or self.pending > self.thin_limit:
                return None  # mid-frame, already gapped, or thinning would not help: drop
            walker = self._thin[key] = h2.FrameWalker(_THIN_KEEP)
            self._behind()
            self.send(link.gap_message(key[0], key[1], time.monotonic(), link.GAP_THIN_START))
        elif boundary and walker.at_boundary and self.pending <= self.limit // 2:
            del self._thin[key]  # caught up: whole chunks again, from this frame on
            self.send(link.gap_message(key[0], key[1], time.monotonic(), link.GAP_THIN_END))
            self._episode_over()
            return data
        elif self.pending > self.thin_limit:
            del self._thin[key]  # the child takes nothing: drop, and gap at the next boundary
            return None
        kept = []
        for frame in walker.feed(data):
            if frame.type == h2.DATA:  # its place, for the child to know whose messages were left out
                kept.append(h2.frame(h2.DATA, _LEFT_OUT | (frame.flags & h2.FLAG_END_STREAM), frame.stream_id, b""))
            elif frame.type in _THIN_KEEP:
                kept.append(h2.frame(frame.type, frame.flags, frame.stream_id, frame.payload or b""))
        thin = b"".join(kept)
        self.dropped += len(data) - len(thin)
        return thin

    def _behind(self) -> None:
        if self.gap_since is None:
            self.gap_since = time.time()
            self.gap_episodes += 1
            log.warning("the recorder process is %d MiB behind: relayed bytes are dropped until it catches up "
                        "(the affected connections' calls are recorded without their messages, or as "
                        "unparsed where a frame was cut)", self.pending >> 20)

    def _resume(self, key: tuple[int, bool], boundary: bool) -> bool:
        """Over the limit, or resuming after it: whether this chunk may go (after a GAP)."""
        if self.pending > self.limit or (self.gap_since is not None and self.pending > self.limit // 2):
            self._behind()
            self.gapped.add(key)
            return False
        if not boundary:
            return False  # the child can only pick up again where a frame begins
        self.gapped.discard(key)
        why = link.GAP_RESTARTED if key in self.joined else link.GAP_BEHIND
        self.joined.discard(key)
        calls = 0
        if key[1]:
            calls = self._gap_calls.pop(key[0], 0)
            self._walkers.pop(key[0], None)
        self.send(link.gap_message(key[0], key[1], time.monotonic(), why, calls))
        self._episode_over()
        return True

    def _count(self, conn_id: int, data: bytes, boundary: bool) -> None:
        """The calls that begin in dropped client bytes (from the first frame boundary on)."""
        walker = self._walkers.get(conn_id)
        if walker is None:
            if not boundary:
                return
            walker = self._walkers[conn_id] = h2.FrameWalker()
        begun = sum(1 for frame in walker.feed(data) if frame.type == h2.HEADERS)
        if begun:
            self._gap_calls[conn_id] = self._gap_calls.get(conn_id, 0) + begun

    def _episode_over(self) -> None:
        if not self.gapped and not self._thin and self.gap_since is not None:
            log.warning("the recorder process caught up after %.1f s; %d MiB of relayed bytes were not recorded",
                        time.time() - self.gap_since, self.dropped >> 20)
            self.gap_since = None
            self.dropped = 0

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
