"""What each upstream speaks: the CRI versions its RuntimeService and ImageService serve, and
whether the runtime streams container events itself.

One prober (cri_proxy.proxy.prober) finds this out; the routing and the bridge read it. An
answer is a frozen value, replaced whole when a probe learns something new, so a reader
never sees half of one answer and half of the next. `UNKNOWN` is the answer before any
probe got a reply: routing then relays straight to the runtime (the default route), and the
bridge speaks the client's own version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from cri_proxy.model.cri import IMAGE_SERVICE

Events = Literal["native", "missing", "unknown"]
EVENTS_NATIVE: Events = "native"  # the runtime serves GetContainerEvents itself
EVENTS_MISSING: Events = "missing"  # it does not: emulated by relisting when asked for
EVENTS_UNKNOWN: Events = "unknown"  # not asked (emulation off) or no answer yet


def service_key(short_service: str) -> str:
    """"image" for ImageService, "runtime" for everything else (RuntimeService, other APIs)."""
    return "image" if short_service == IMAGE_SERVICE else "runtime"


@dataclass(frozen=True, slots=True)
class UpstreamApis:
    """The CRI versions each service's upstream serves, preferred (newest) first.

    An empty tuple means no answer yet for that service. With one socket for both services,
    `image` repeats `runtime`.
    """

    runtime: tuple[str, ...] = ()
    image: tuple[str, ...] = ()
    events: Events = EVENTS_UNKNOWN

    @property
    def known(self) -> bool:
        """Whether a probe has answered for the runtime (the image side follows it)."""
        return bool(self.runtime)

    @property
    def preferred(self) -> str | None:
        """The runtime's newest CRI version, or None while unknown."""
        return self.runtime[0] if self.runtime else None

    def speaks(self, service: str) -> tuple[str, ...]:
        """Every version the upstream of "runtime" or "image" serves."""
        return self.image if service == "image" else self.runtime

    def preferred_for(self, service: str) -> str | None:
        found = self.speaks(service)
        return found[0] if found else None

    @property
    def runtime_api(self) -> str | None:
        """The session row's runtime_api text: "v1", "v1alpha2" or "v1,v1alpha2"."""
        return ",".join(self.runtime) or None

    @property
    def image_api(self) -> str | None:
        """The session row's image_api text, as runtime_api."""
        return ",".join(self.image) or None

    def describe(self) -> str:
        """One line for logs and the service manager's status."""
        if not self.known:
            return "CRI version not known yet"
        text = f"CRI {' and '.join(self.runtime)}"
        if self.image != self.runtime:
            text += f" (images: CRI {' and '.join(self.image) or 'unknown'})"
        if self.events != EVENTS_UNKNOWN:
            text += f", container events {self.events}"
        return text


UNKNOWN = UpstreamApis()


class ApiSource(Protocol):
    """Where the bridge learns what the upstreams speak: the prober, given to it."""

    @property
    def apis(self) -> UpstreamApis:
        """The last answer (UNKNOWN before the first)."""
        ...

    def probe_soon(self) -> None:
        """Ask again in the background (something suggests the upstream changed)."""
        ...

    async def reprobe(self) -> UpstreamApis:
        """Ask again now and return the answer (the last known one if none came)."""
        ...
