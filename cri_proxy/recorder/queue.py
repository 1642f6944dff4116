"""The recorder's bounded queue: calls waiting for the writer, bounded by count and bytes.

Every method runs under the recorder's lock. When the queue is full a call is counted lost
instead; the calls lost until the queue drains form one loss episode ("queue full"). A batch
whose write failed is held and retried first, already prepared (redacted, decoded), so the
pipeline's peers see each call once.
"""

from __future__ import annotations

import time
from collections import deque

from cri_proxy.model.options import RecorderOptions
from cri_proxy.model.session import LossEpisode
from cri_proxy.recorder.prepared import PreparedCall

# A batch is also due once this many bytes wait: 500 calls of 1 MB replies would otherwise
# fill the whole queue (--queue-mb) before the writer is woken, and the next calls be lost.
BATCH_BYTES = 4 << 20


class CallQueue:
    def __init__(self, options: RecorderOptions) -> None:
        self.options = options
        self.calls: deque[PreparedCall] = deque()  # as admitted, not yet prepared
        self.bytes = 0
        self.held: list[PreparedCall] = []  # a prepared batch whose write failed
        self.in_flight = 0  # calls of the batch being written
        self.overflow_lost: int | None = None  # calls lost in the current queue-full episode
        self.overflow_since = 0.0
        self.drained: int | None = None  # an episode just ended: logged by the writer, outside the lock

    def full_for(self, size: int) -> bool:
        opts = self.options
        return len(self.calls) >= opts.max_queue_calls or self.bytes + size > opts.max_queue_bytes

    def put(self, item: PreparedCall) -> bool:
        """Queues the item; True when a whole batch is now waiting (wake the writer)."""
        self.calls.append(item)
        self.bytes += item.size
        return self.batch_ready()

    def batch_ready(self) -> bool:
        """Whether a whole batch waits, by count or by bytes."""
        return len(self.calls) >= self.options.batch_max_calls or self.bytes >= BATCH_BYTES

    def overflow(self) -> bool:
        """Counts one call lost to a full queue; True when this starts an episode."""
        first = self.overflow_lost is None
        if self.overflow_lost is None:
            self.overflow_lost = 0
            self.overflow_since = time.time()
        self.overflow_lost += 1
        return first

    def waiting(self) -> int:
        return len(self.calls) + len(self.held) + self.in_flight

    def waiting_bytes(self) -> int:
        return self.bytes + sum(item.size for item in self.held)

    def take(self, losses: list[LossEpisode]) -> tuple[list[PreparedCall], bool]:
        """The held batch (True: already prepared), or the next calls from the queue (False).
        A queue-full episode that ends here is appended to `losses`."""
        if self.held:
            batch, self.held = self.held, []
            self.in_flight = len(batch)
            return batch, True
        batch = []
        size = 0
        for _ in range(min(len(self.calls), self.options.batch_max_calls)):
            item = self.calls.popleft()
            self.bytes -= item.size
            batch.append(item)
            size += item.size
            if size >= BATCH_BYTES:
                break
        if not self.calls and self.overflow_lost is not None:
            self.drained = self.overflow_lost
            losses.append(LossEpisode(self.overflow_since, time.time(), "queue full", self.overflow_lost))
            self.overflow_lost = None
        self.in_flight = len(batch)
        return batch, False

    def open_episode(self, now: float) -> LossEpisode | None:
        """At stop: the queue-full episode still going on, if any."""
        if not self.overflow_lost:
            return None
        return LossEpisode(self.overflow_since, now, "queue full", self.overflow_lost)

    def clear(self) -> int:
        """Empties the queue (at stop); returns how many calls were still in it."""
        left = len(self.calls) + len(self.held)
        self.calls.clear()
        self.held = []
        self.bytes = 0
        return left
