"""The lean tap's calls (recorder.leantap): what an open call is while only metrics need it,
the `OpenCall` it becomes when the full tap takes the connection over, and `Tally`, which
counts a plain call's end into the metrics peer's numbers.

A `LeanCall` is an `OpenCall` (it sits in the same `calls` dict, which the worker counts as
the calls pending and the metrics read as the calls in flight) holding only what the metrics
and that promotion need: the request's header facts, its start, the messages and bytes
counted each way, and whether response headers came. Its `rec`, `request`, `response`,
`unparsed` and `skimmed` are never set: nothing but the lean tap reads one, and the lean
tap promotes every LeanCall of a connection (`promoted`) before the full tap reads its calls.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Final, Protocol

from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.opencall import OpenCall, new_call
from cri_proxy.recorder.sides import HeaderFacts

if TYPE_CHECKING:
    from cri_proxy.recorder.metrics import CallMetrics
    from cri_proxy.recorder.metrics_counts import Count, MethodCounts

__all__ = ["MAX_ENDS", "LeanCall", "Tallied", "Tally", "end_status", "promoted"]

MAX_ENDS: Final = 4096  # (path, grpc-status) pairs whose counts are cached: the codes are the runtime's to choose
Tallied = tuple["Count", "MethodCounts", int]  # the call's counter, its method's counts, 1 if it failed


class LeanCall(OpenCall):
    """A call opened by the lean tap and not yet promoted."""

    __slots__ = ("facts", "request_bytes", "response_bytes", "started_at")

    def __init__(self, facts: HeaderFacts, t0: float, started_at: float) -> None:
        # Not OpenCall's __init__: only what the lean tap reads is set (see the module's docstring).
        self.facts = facts  # the request's: path and API version
        self.t0 = t0
        self.started_at = started_at
        self.sent = self.got = 0  # messages each way, as OpenCall counts them
        self.request_bytes = self.response_bytes = 0
        self.answered = False


def promoted(call: LeanCall, info: ConnectionInfo, stream_id: int, upstream: str) -> OpenCall:
    """The OpenCall the full tap would hold for `call` by now, as recorder.tapcalls opens it
    in lean mode (the request metadata uncut, no notes: the lean tap leaves the calls of a
    translated connection, and any call with a note, to the full tap)."""
    facts = call.facts
    rec = new_call(info, stream_id, call.started_at, facts.path, upstream, facts.api, facts.metadata, [])
    rec.request_bytes, rec.response_bytes = call.request_bytes, call.response_bytes
    open_call = OpenCall(rec, call.t0)
    open_call.sent, open_call.got, open_call.answered = call.sent, call.got, call.answered
    return open_call


def end_status(facts: HeaderFacts) -> int | None:
    """The grpc-status of a block that ends a call, when that is all the block tells the call
    (a readable code, no grpc-status note, HTTP status 200); else None: the full tap reads it."""
    has_code, code, _, _, notes = facts.status
    if not has_code or notes or facts.http_note is not None:
        return None
    return code


class Counted(Protocol):
    """A connection whose calls `Tally` counts (recorder.leantap.LeanConnection)."""

    info: ConnectionInfo
    client_count: Count | None


class Tally:
    """Counts a LeanCall that ended plainly (grpc-status read, no note) as
    metrics.CallMetrics.observe counts the RecordedCall the full tap would have made of it:
    the same counters, buckets and sums, found once per (path, status)."""

    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics
        self.bounds = metrics.counts.bounds
        self.ends: dict[tuple[str, int], Tallied] = {}

    def count(self, call: LeanCall, status: int, duration: float, conn: Counted) -> bool:
        """Counted (`conn`: the call's connection, whose client counter is kept there); False
        for a path the table lacks (the call goes to `observe` built)."""
        path = call.facts.path
        tallied = self.ends.get((path, status))
        if tallied is None:
            tallied = self.metrics.tally_entry(path, status)
            if tallied is None:
                return False
            if len(self.ends) < MAX_ENDS:
                self.ends[(path, status)] = tallied
        count, per, failed = tallied
        count.n += 1
        per.buckets[bisect_left(self.bounds, duration)] += 1
        per.sum += duration
        per.failures += failed
        per.request += call.request_bytes
        per.response += call.response_bytes
        client = conn.client_count
        if client is None:
            client = conn.client_count = self.metrics.client_count(conn.info.peer_name or "unknown")
        client.n += 1
        return True
