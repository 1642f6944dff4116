"""What the relay process counts lost when its recorder process dies (see recorder_link).

The recorder acknowledges, in each STATS, how many link bytes it has handled and how many
of the calls it took in are not settled yet (open, or queued for the next batch). When it
dies, those calls are lost, and so is every call that began in what the proxy shipped after
that acknowledgement, or relayed while no recorder was up: those are counted here by
walking the client's frame headers (one request HEADERS frame per call), off the hot path:
the shipped chunks are only kept (by reference) until acknowledged, and walked after a
death; while no recorder is up, the relay has nothing else to do for recording.
"""

from __future__ import annotations

import time
from collections import deque

from cri_proxy.h2 import frames as h2


class Unacked:
    """The client chunks shipped to the current recorder and not acknowledged yet."""

    __slots__ = ("chunks", "shipped")

    def __init__(self) -> None:
        self.chunks: deque[tuple[int, int, bool, bytes]] = deque()  # end offset, conn, boundary, data
        self.shipped = 0  # link bytes handed to this recorder (queued to its socket)

    def acknowledged(self, received: int) -> None:
        chunks = self.chunks
        while chunks and chunks[0][0] <= received:
            chunks.popleft()


class Outage:
    """One stretch without a working recorder: the calls and bytes it cost, so far."""

    def __init__(self, calls: int, unacked_bytes: int) -> None:
        self.since = time.time()
        self.calls = calls
        self.bytes = unacked_bytes
        self.walkers: dict[int, h2.FrameWalker] = {}  # per connection, from a frame boundary on

    def relayed(self, conn_id: int, data: bytes, boundary: bool, from_client: bool) -> None:
        """Bytes relayed while no recorder takes them: count them, and the calls they begin."""
        self.bytes += len(data)
        if not from_client:
            return
        walker = self.walkers.get(conn_id)
        if walker is None:
            if not boundary:
                return  # a frame is under way: walk from the next boundary on
            walker = self.walkers[conn_id] = h2.FrameWalker()
        self.calls += sum(1 for frame in walker.feed(data) if frame.type == h2.HEADERS)

    def walk(self, unacked: Unacked) -> None:
        """Count the calls in the chunks the dead recorder had not acknowledged."""
        for _, conn_id, boundary, data in unacked.chunks:
            self.relayed(conn_id, data, boundary, True)
            self.bytes -= len(data)  # already in unacked_bytes
        unacked.chunks.clear()

    def forget(self, conn_id: int) -> None:
        self.walkers.pop(conn_id, None)
