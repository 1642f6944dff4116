"""The recorder's outbox past its limit (see recorder_out): a direction thinned, or dropped
and gapped, until the recorder process catches up.

A direction that passes the limit at a frame boundary is thinned rather than dropped (one gap
made the rest of a flooded connection unparsed): from that boundary its frames go on without
DATA (each DATA frame becomes an empty marker with its stream and END_STREAM), so every
header block reaches the child and its HPACK state stays in step; the child records the calls
of that time without that direction's messages (`GAP_THIN_START`, `GAP_THIN_END`). Thinned
bytes are a few dozen a call, but a child that takes nothing would still let them grow: past
a quarter more than the limit the direction is dropped and gapped as recorder_out says.
"""

from __future__ import annotations

import logging
import time

from cri_proxy.h2 import frames as h2
from cri_proxy.model import link

log = logging.getLogger(__name__)

# What a thinned direction still sends: everything the child's tap reads but DATA.
_THIN_KEEP = frozenset({h2.HEADERS, h2.CONTINUATION, h2.RST_STREAM, h2.SETTINGS, 0x5, h2.GOAWAY})
# A DATA frame left out becomes an empty PADDED one, which no peer sends (PADDED needs a pad
# length byte): the child's tap knows it as such (recorder.tap `thin`).
_LEFT_OUT = h2.FLAG_PADDED


class Behind:
    """Outbox's state and steps while the recorder is behind; Outbox sets the state up."""

    pending: int
    limit: int
    thin_limit: int
    gapped: set[tuple[int, bool]]
    joined: set[tuple[int, bool]]
    gap_since: float | None
    dropped: int
    gap_episodes: int
    _walkers: dict[int, h2.FrameWalker]
    _gap_calls: dict[int, int]
    _thin: dict[tuple[int, bool], h2.FrameWalker]

    def send(self, data: bytes) -> None:
        raise NotImplementedError

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
