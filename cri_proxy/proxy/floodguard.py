"""Flood detection for a relayed connection: SETTINGS and PING frames out of all proportion to
the calls the connection carries.

A client may send SETTINGS and PINGs at any rate and read the acknowledgements: no runtime
refuses that (grpc-go polices pings only without calls open, and SETTINGS not at all), and
forwarding them costs the relay almost nothing. But the recorder must follow every frame
(SETTINGS carry the HPACK table size), at many times the relay's cost per frame, so one
flooding connection would leave every other connection's calls unrecorded. nginx meets the
same attack with a ratio (ngx_http_v2.c, "http2 flood detected": more than 8 bytes of
overhead for each byte of payload, beyond a free megabyte); so does the relay: the client's
SETTINGS and PING bytes may not exceed `FREE_BYTES` plus `RATIO` times the other bytes the
connection carried (both ways: a client watching a stream sends pings for data it receives)
plus `FORGIVEN_PER_S` for every second of the connection's life (keepalive pings on an idle
connection). The free allowance is smaller than nginx's: the recorder pays about 2 us for
each of these frames and for its acknowledgement, and a client needs a few dozen bytes of
them to start (its SETTINGS, a ping or two). Past that the connection ends with GOAWAY ENHANCE_YOUR_CALM, the code grpc-go
gives a ping flood. The relay's cost: one comparison per chunk; the sums run only when the
client's control bytes pass the last allowance computed.
"""

from __future__ import annotations

from typing import Final

from cri_proxy.h2.frames import FrameWalker

FREE_BYTES: Final = 64 << 10
RATIO: Final = 8
FORGIVEN_PER_S: Final = 1024


class ControlBudget:
    """How many bytes of SETTINGS and PING frames the client may have sent so far."""

    __slots__ = ("allowed", "since")

    def __init__(self, now: float) -> None:
        self.allowed = FREE_BYTES  # compared with the client walker's `control` after each chunk
        self.since = now

    def breach(self, c2s: FrameWalker, s2c: FrameWalker, now: float) -> str | None:
        """Why the connection is a flood, or None (and a new allowance) when it is not."""
        carried = c2s.walked - c2s.control + s2c.walked - s2c.control
        self.allowed = FREE_BYTES + RATIO * carried + int(FORGIVEN_PER_S * (now - self.since))
        if c2s.control <= self.allowed:
            return None
        return (f"a flood of SETTINGS and PING frames: {c2s.control} bytes of them against {carried} bytes "
                f"of everything else")
