"""What SETTINGS_HEADER_TABLE_SIZE allows one direction's HPACK encoder, followed from the
SETTINGS its peer sent and the acknowledgements it sent back (RFC 9113 §6.5.3, RFC 7541 §4.2).

An encoder may use a new limit as soon as it receives the SETTINGS, and must obey a lower one
from its acknowledgement on; a watcher that sees the SETTINGS pass before the blocks encoded
under the old limit therefore allows the larger of the acknowledged limit and those still in
flight, and lowers it only at the acknowledgement, which comes before the encoder's next block
in the encoder's own direction. SETTINGS not yet acknowledged are kept as at most
`MAX_PENDING_RUNS` runs (count, largest value, last value): a peer sending SETTINGS by the
hundred thousand costs constant memory and time. Merging only ever allows more than an exact
account, so nothing valid is refused.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from cri_proxy.h2.hpack_decoder import DEFAULT_TABLE_SIZE

MAX_PENDING_RUNS: Final = 8


class TableSizeLimit:
    """The limit on one encoder's dynamic table; `allowed` is what its decoder may accept."""

    __slots__ = ("acked", "pending", "allowed")

    def __init__(self) -> None:
        self.acked = DEFAULT_TABLE_SIZE  # the limit acknowledged last
        self.pending: deque[list[int | None]] = deque()  # runs of unacknowledged SETTINGS: [count, max, last]
        self.allowed = DEFAULT_TABLE_SIZE

    def sent(self, value: int | None) -> int:
        """The peer sent SETTINGS (`value`: its HEADER_TABLE_SIZE, None without one); the new `allowed`."""
        pending = self.pending
        if len(pending) < MAX_PENDING_RUNS:
            pending.append([1, value, value])
        else:
            run = pending[-1]
            run[0] = (run[0] or 0) + 1
            if value is not None:
                run[1] = value if run[1] is None else max(run[1], value)
                run[2] = value
        return self._allow()

    def acknowledged(self) -> int:
        """The encoder acknowledged the oldest SETTINGS in flight; the new `allowed`."""
        if self.pending:
            run = self.pending[0]
            run[0] = (run[0] or 1) - 1
            if not run[0]:
                self.pending.popleft()
                if run[2] is not None:
                    self.acked = run[2]
        return self._allow()

    @property
    def latest(self) -> int:
        """The limit the peer sent last, acknowledged or not: what a new encoder towards that
        peer keeps to from the start (using less than allowed is always valid)."""
        for run in reversed(self.pending):
            if run[2] is not None:
                return run[2]
        return self.acked

    def _allow(self) -> int:
        largest = self.acked
        for run in self.pending:
            if run[1] is not None and run[1] > largest:
                largest = run[1]
        self.allowed = largest
        return largest
