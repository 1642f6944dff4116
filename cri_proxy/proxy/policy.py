"""What the relay translates and how it answers (`TranslationPolicy`): the bridge's options
as the relay reads them, with the fault rules and what they know of pods. Made once by the
daemon; the first-call route hands it to each connection's translator (proxy.translate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cri_proxy.faults.book import FaultBook
from cri_proxy.h2 import hpack_decoder
from cri_proxy.proxy import faultwire
from cri_proxy.proxy.podfacts import FactTable


@dataclass(frozen=True)
class TranslationPolicy:
    """What the relay translates and how it answers: the bridge's options, read by the relay.

    `upstream_api(path)`: the CRI version the relay translates a connection whose first call
    is `path` into, or None when the connection is not translated here (same version, or it
    needs the bridge).
    """

    upstream_api: Callable[[str], str | None]
    cgroup_driver: str | None = None
    strict: bool = False
    announced: set[tuple[str, str]] = field(default_factory=set)  # said once in the log, per direction
    faults: FaultBook | None = None  # --faults: a CRI connection some rule could take is read, translated or not
    pod_facts: FactTable = field(default_factory=FactTable)  # what fault rules on pods know of ids
    unread: faultwire.Unread | None = field(init=False, default=None)  # connections no rule can take
    caches: faultwire.RuleCaches | None = field(init=False, default=None)  # translators' cached blocks

    def __post_init__(self) -> None:
        hpack_decoder.warm()  # made once at start: the first translated call does not wait for it
        if self.faults is not None:
            object.__setattr__(self, "unread", faultwire.Unread(self.faults))
            object.__setattr__(self, "caches", faultwire.RuleCaches(self.faults))
