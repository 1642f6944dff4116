"""When the recorder process has fallen too far behind the relay to record every call whole.

The relay ships every chunk the moment it has forwarded it; this process reads it at once
into its spool (recorder.spool) and records it when it gets to it, at the relay's timestamps.
Its backlog is then known, not guessed: the bytes in the spool plus the calls waiting for the
writer (recorder.queue), both counted in bytes, large bodies fully. That backlog is bounded
by `--queue-mb` (the budget; the proxy holds up to a quarter as much again while this process
does not read): a flood that the recorder cannot follow live is recorded late, as long as it
fits.

What a call costs the recorder is mostly its messages (the bodies' bytes walked, compared,
decoded, redacted and stored) and its row; following it (HPACK, status, end) is a fraction
of that. So it gives up in two steps. When the backlog passes `THIN_AT` of the budget, the
calls that start are recorded without their messages (`THIN`: method, timings, status,
metadata and a note saying their messages were left out), which in a flood of large replies
costs about what a small call does; it records them whole again once the backlog is down to
`WHOLE_AT`. Only when that is not enough, past `SKIM_AT`, does it skim (`SKIM`): the calls
that start are followed without being recorded and counted lost, until the backlog is back
under `RESUME_AT` (then it thins). What a flood costs is about the calls that did not fit,
not the whole backlog (nor a second of calls) per episode. It also skims when the chunk it
reads was relayed more than `MAX_LAG_S` ago (small calls take few bytes: a long backlog of
them fits the budget, but the recording would trail the node by more than anyone waiting
for it would accept), until it is within `RESUME_LAG_S`. A skim that starts again within
`MERGE_S` of the last one's end belongs to the same loss episode, so a flood that comes and
goes counts one episode per second or so, without costing a second of calls each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

WHOLE: Final = 0  # every call recorded with its messages
THIN: Final = 1  # calls that start are recorded without their messages
SKIM: Final = 2  # calls that start are followed, not recorded, and counted lost

MAX_LAG_S = 60.0
RESUME_LAG_S = 45.0
THIN_AT = 0.5
WHOLE_AT = 0.4
SKIM_AT = 0.75
RESUME_AT = 0.7
MERGE_S = 1.0


@dataclass
class Episode:
    """Calls skimmed since `since` (wall clock); `ended` once skimming stopped (for merging)."""

    since: float
    lost: int = 0
    ended: float | None = None


class Behind:
    """The decision to thin or skim, fed with the backlog as the recorder works through it."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.level = WHOLE
        self.lag = 0.0
        self.backlog = 0  # bytes read from the proxy or queued for the writer, not written yet

    @property
    def skimming(self) -> bool:
        return self.level == SKIM

    def feed(self, now: float, relayed_at: float, backlog: int) -> int | None:
        """The chunk being handled was relayed at `relayed_at` (monotonic) and is handled `now`,
        with `backlog` bytes waiting: the level to go to (WHOLE, THIN or SKIM) when it changes,
        None when it stays."""
        lag = self.lag = now - relayed_at
        self.backlog = backlog
        budget, level = self.budget, self.level
        if backlog > budget * SKIM_AT or lag > MAX_LAG_S:
            new = SKIM
        elif level == SKIM and (backlog > budget * RESUME_AT or lag >= RESUME_LAG_S):
            new = SKIM
        elif backlog > budget * THIN_AT or (level != WHOLE and backlog > budget * WHOLE_AT):
            new = THIN
        else:
            new = WHOLE
        if new == level:
            return None
        self.level = new
        return new
