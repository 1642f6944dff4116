"""The tap for metrics alone (`--metrics-listen` without `--db` or `--otlp-endpoint`): the
calls counted straight from their frames, with the full tap (recorder.tap) for what is rare.

In this mode the relay ships the server's DATA as summaries (proxy.lean) and nothing needs
a call's metadata or messages: the metrics read its path, status, duration and message bytes.
So while a connection's frames are the common ones (HEADERS holding a whole block, DATA of
whole messages or their summaries, SETTINGS, PING, WINDOW_UPDATE) `LeanConnection` walks each
chunk in one loop: a header block is looked up by its bytes among the blocks decoded since
the direction's HPACK table last changed (a server's every answer and trailers, a client's
every request of a kind; decoded only when not found, as proxy.translate keeps its rewrites),
a call opened from it is a `LeanCall` (its facts, times and byte counts), and a call ended by
trailers whose only news is a grpc-status is counted right away into the metrics peer's plain
numbers (leancalls.Tally, metrics.CallMetrics.tally_entry), without a `RecordedCall`.

Anything else (a frame cut by a chunk's end, CONTINUATION, padding, RST_STREAM, GOAWAY, a
message cut by a frame, a status that is not a plain one, a note, a gap, the connection
closing, skimming, translation) first turns every open `LeanCall` into the `OpenCall` the
full tap would hold by then (`_promote`), and the full tap goes on from that frame, on the
same HPACK decoders; once it holds no open call and its walks sit at frame boundaries the
next chunk is walked here again. So the calls and metrics are what the full tap gives
(tests/recorder/test_leantap.py compares both on the same bytes, however they are cut).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cri_proxy.h2 import frames as h2
from cri_proxy.model.sink import CallSink
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.leancalls import Tally
from cri_proxy.recorder.leanwalk import MAX_BLOCKS, LeanWalks
from cri_proxy.recorder.sides import HeaderDecoder
from cri_proxy.recorder.tap import RecordingTap, fast_decoder

if TYPE_CHECKING:
    from cri_proxy.recorder.metrics import CallMetrics

__all__ = ["MAX_BLOCKS", "LeanConnection", "LeanTap"]


class LeanTap(RecordingTap):
    """A `RecordingTap` for metrics alone (always `lean`); `sink` a recorder.telemetry
    Telemetry counts calls here without them being built (`Telemetry.tally`)."""

    def __init__(self, sink: CallSink, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 decoder: Callable[[], HeaderDecoder] = fast_decoder) -> None:
        super().__init__(sink, clock, timer, decoder, lean=True)
        tally = getattr(sink, "tally", None)
        metrics: CallMetrics | None = tally() if callable(tally) else None
        self.tally = Tally(metrics) if metrics is not None else None

    def open(self, info: ConnectionInfo) -> LeanConnection:
        return LeanConnection(self, info)


class LeanConnection(LeanWalks):
    """One connection's tap: `quick` while every open call is a `LeanCall` and its walks
    (recorder.leanwalk) read the chunks; else the full tap (ConnectionRecorder) does."""

    def __init__(self, tap: LeanTap, info: ConnectionInfo) -> None:
        super().__init__(tap, info, tap.tally)

    # The ConnectionTap seam ------------------------------------------------------------
    def client_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._feed(True, data if type(data) is bytes else bytes(data))

    def server_bytes(self, data: bytes, boundary: bool = True) -> None:
        self._feed(False, data if type(data) is bytes else bytes(data))

    def feed(self, from_client: bool, data: bytes | memoryview) -> None:
        """A large chunk as a view of the spool's (recorder.loop): the lean walks read bytes."""
        self._feed(from_client, bytes(data))

    def _feed(self, from_client: bool, data: bytes) -> None:
        self._now = self.tap.timer()
        if not (self.quick and not self.tap.skimming) and not self._ready():
            self.walkers[from_client].feed(data)
            return
        try:
            (self._walk_client if from_client else self._walk_server)(data)
        except Exception:  # a bug: as the full tap's walk, everything from here unparsed
            self._promote()
            self._failed(self.client if from_client else self.server, -1, 0)

    def gap(self, from_client: bool, now: float | None = None, why: str = "it fell behind") -> None:
        self._promote()
        super().gap(from_client, now, why)

    def thin(self, from_client: bool, on: bool, now: float) -> None:
        self._promote()
        super().thin(from_client, on, now)

    def client_frames(self, frames: list[h2.Frame]) -> None:
        self._promote()
        super().client_frames(frames)

    def server_frames(self, frames: list[h2.Frame]) -> None:
        self._promote()
        super().server_frames(frames)

    def upstream_changed(self, upstream: str) -> None:
        self._promote()  # a LeanCall takes the connection's upstream when it is promoted
        super().upstream_changed(upstream)

    def call_noted(self, stream_id: int, upstream_api: str | None, notes: list[str]) -> None:
        self._promote()
        super().call_noted(stream_id, upstream_api, notes)

    def closed(self, reason: str | None) -> None:
        self._promote()
        super().closed(reason)

    # Which walk ----------------------------------------------------------------------------
    def _ready(self) -> bool:
        """Whether this chunk is walked here: every open call a LeanCall, or none open and the
        full tap's state plain again (its walks at frame boundaries, no block open, neither
        direction's HPACK state lost, no thinning, no translation, not skimming)."""
        if self.quick:  # and skimming: calls that start now are the full tap's
            self._promote()
            return False
        if self.calls or self.tap.skimming or self._translated is not None or True in self.thinned.values():
            return False
        client, server = self.client, self.server
        if client.lost is not None or server.lost is not None or client.in_block or server.in_block:
            return False
        if any(w.held or w.kind >= 0 for w in self.walkers.values()):
            return False
        self.quick = True
        return True
