"""When the recorder process has fallen too far behind the relay to record every call.

The relay ships every chunk the moment it has forwarded it; what this process has not read
yet waits in the proxy's buffer (up to half of `--queue-mb`: beyond that it drops bytes, and
the calls of the connections concerned are recorded as unparsed from then on) and in the
socket between them. Recording a call costs several times what following it does (HPACK,
status, end), so when that backlog grows too far the recorder skims: the calls that start
are followed without being recorded and counted lost, until it has caught up.

The backlog is the lag (how long ago the relay forwarded the chunk being read now) times
the rate at which the relay forwards bytes, measured over tenths of a second of the relay's
time (the window under way counts as soon as it is 20 ms old: a flood of 1 MB replies ships
tens of MB in a tenth), a window begun after a pause starting afresh.
Skimming starts when that reaches half the proxy's buffer, so the buffer never fills and no
connection loses its HPACK state to a flood, or when the lag passes `MAX_LAG_S` (small calls
take few bytes: a long backlog of them fits the buffer, but the recording would trail the
node by more than anyone waiting for it would accept). It stops as soon as the lag is under
`CAUGHT_UP_S`. A skim that starts again within `MERGE_S` of the last one's end belongs to
the same loss episode, so a flood that comes and goes counts one episode per second or so,
without costing a second of calls each time.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LAG_S = 10.0
CAUGHT_UP_S = 0.1
MERGE_S = 1.0
RATE_WINDOW_S = 0.1
_EARLY_S = 0.02  # a window this old already tells a rate


@dataclass
class Episode:
    """Calls skimmed since `since` (wall clock); `ended` once skimming stopped (for merging)."""

    since: float
    lost: int = 0
    ended: float | None = None


class Behind:
    """The skim decision, fed with every chunk the recorder reads."""

    def __init__(self, buffer_bytes: int) -> None:
        self.limit_bytes = buffer_bytes // 2
        self.skimming = False
        self.lag = 0.0
        self.rate = 0.0  # bytes per second of the relay's time
        self._rate_bytes = 0
        self._rate_since = 0.0

    def backlog(self) -> float:
        """Bytes the relay forwarded that have not been read here yet (an estimate)."""
        return self.lag * self.rate

    def feed(self, now: float, relayed_at: float, size: int) -> bool | None:
        """A chunk the relay forwarded at `relayed_at` (monotonic), read `now`: True when
        skimming should start, False when it should stop, None when nothing changes."""
        self._rate_bytes += size
        elapsed = relayed_at - self._rate_since
        rate = self.rate
        if elapsed >= RATE_WINDOW_S:
            # After a pause the window is mostly idle time: the next one tells the rate.
            rate = self.rate = self._rate_bytes / elapsed if elapsed < 2 * RATE_WINDOW_S else 0.0
            self._rate_bytes, self._rate_since = 0, relayed_at
        elif elapsed >= _EARLY_S:
            rate = max(rate, self._rate_bytes / elapsed)
        lag = self.lag = now - relayed_at
        if self.skimming:
            if lag < CAUGHT_UP_S:
                self.skimming = False
                return False
        elif lag > MAX_LAG_S or lag * rate > self.limit_bytes:
            self.skimming = True
            return True
        return None
