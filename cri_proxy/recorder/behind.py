"""When the recorder process has fallen too far behind the relay to record every call.

The relay ships every chunk the moment it has forwarded it; this process reads it at once
into its spool (recorder.spool) and records it when it gets to it, at the relay's timestamps.
Its backlog is then known, not guessed: the bytes in the spool plus the calls waiting for the
writer (recorder.queue), both counted in bytes, large bodies fully (but a copy of a body the
tap has just seen, which waits in the spool as a reference: recorder.squeeze). That backlog is bounded
by `--queue-mb` (the budget; the proxy holds up to a quarter as much again while this process
does not read): a flood that the recorder cannot follow live is recorded late, as long as it
fits.

Recording a call costs several times what following it does (HPACK, status, end), so when
the backlog passes `SKIM_AT` of the budget the recorder skims: the calls that start are
followed without being recorded and counted lost. It records again as soon as the backlog
is down to `RESUME_AT` of the budget: what a flood costs is about the calls that did not
fit, not the whole backlog (nor a second of calls) per episode. It also skims when the chunk it reads was relayed more than
`MAX_LAG_S` ago (small calls take few bytes: a long backlog of them fits the budget, but the
recording would trail the node by more than anyone waiting for it would accept), until it
is within `RESUME_LAG_S`. A skim that starts again within `MERGE_S` of the last one's end
belongs to the same loss episode, so a flood that comes and goes counts one episode per
second or so, without costing a second of calls each time.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LAG_S = 60.0
RESUME_LAG_S = 45.0
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
    """The skim decision, fed with the backlog as the recorder works through it."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.skimming = False
        self.lag = 0.0
        self.backlog = 0  # bytes read from the proxy or queued for the writer, not written yet

    def feed(self, now: float, relayed_at: float, backlog: int) -> bool | None:
        """The chunk being handled was relayed at `relayed_at` (monotonic) and is handled `now`,
        with `backlog` bytes waiting: True when skimming should start, False when it should
        stop, None when nothing changes."""
        lag = self.lag = now - relayed_at
        self.backlog = backlog
        if self.skimming:
            if backlog <= self.budget * RESUME_AT and lag < RESUME_LAG_S:
                self.skimming = False
                return False
        elif backlog > self.budget * SKIM_AT or lag > MAX_LAG_S:
            self.skimming = True
            return True
        return None
