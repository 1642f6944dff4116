"""How the recorder process catches up when it falls behind the relay: skimming, loss episodes.

`CatchUp` is the part of the recorder's loop (recorder.loop.Worker, its subclass) that
watches how far behind the relay it is (recorder.behind) and, past the bound, has the tap
skim: calls that start are followed without their messages and counted lost, in one loss
episode per flood, instead of recorded.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.session import LossEpisode
from cri_proxy.recorder.behind import MERGE_S, Behind, Episode
from cri_proxy.recorder.nowriter import NoWriter
from cri_proxy.recorder.priority import Priority
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.spool import Spool
from cri_proxy.recorder.tap import RecordingTap

if TYPE_CHECKING:
    from cri_proxy.recorder.telemetry import Telemetry

__all__ = ["CatchUp"]

log = logging.getLogger(__name__)


class CatchUp:
    """Skimming and its loss episodes (the base of recorder.loop.Worker)."""

    behind: Behind
    spool: Spool
    tap: RecordingTap
    recorder: Recorder | NoWriter
    telemetry: Telemetry | None
    deepest: tuple[int, float]
    priority: Priority | None
    received: int
    _episode: Episode | None

    def queued_bytes(self) -> int:
        raise NotImplementedError

    def watch_lag(self, mono: float) -> None:
        """How far behind the relay the recorder is (the chunk relayed at `mono` just handled,
        and the backlog): skim, or stop skimming."""
        now = time.monotonic()
        change = self.behind.feed(now, mono, self.spool.bytes + self.queued_bytes())
        self.deepest = max(self.deepest, (self.behind.backlog, self.behind.lag))
        if self.priority is not None:  # what has come in: handled, and read but not handled yet
            self.priority.follow(self.behind.lag, self.behind.backlog, self.received + self.spool.bytes, now)
        if change is not None:
            self.skim(change, self.behind.lag)

    def skim(self, on: bool, lag: float) -> None:
        """Fallen behind (or caught up): calls that start now are not recorded (or are again).

        Following the calls (but not their messages, nor writing them) costs a fraction of
        recording them, so the recorder catches up while its HPACK state stays in step; the
        calls it skims are counted lost, in one loss episode (see recorder.behind).
        """
        self.tap.skimming = on
        now = time.time()
        episode = self._episode
        if on:
            if episode is not None and episode.ended is not None and now - episode.ended < MERGE_S:
                episode.ended = None  # the same flood, going on
                return
            self.end_episode(now)
            self._episode = Episode(now)
            self.recorder.lost_elsewhere(0, starts=True)
            log.warning("the recorder is %.1f s behind the proxy (about %d MiB): calls are counted lost, not "
                        "recorded, until it catches up", lag, self.behind.backlog >> 20)
        elif episode is not None:
            episode.ended = now

    def end_episode(self, now: float, force: bool = False) -> None:
        """Writes the skimming episode once it has ended for MERGE_S (or at once, `force`)."""
        episode = self._episode
        if episode is None or (episode.ended is None and not force):
            return
        ended = episode.ended if episode.ended is not None else now
        if not force and now - ended < MERGE_S:
            return
        self._episode = None
        self.recorder.lost_elsewhere(0, LossEpisode(episode.since, ended, "recorder fell behind", episode.lost))
        log.warning("the recorder caught up after %.1f s; %d calls were lost meanwhile", ended - episode.since,
                    episode.lost)

    def _skimmed(self, call: RecordedCall) -> None:
        if self._episode is not None:
            self._episode.lost += 1
        self.recorder.lost_elsewhere(1)
        if self.telemetry is not None:
            self.telemetry.skimmed(call)
