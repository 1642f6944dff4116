"""What to keep: include/exclude by method pattern, and per-method sampling.

Decided on the call path when a call ends, before it is queued, so what is not kept costs
no memory and no writer time. Sampling never drops an error or a call that changes the
node, and it is deterministic (every n-th call of a method, not a coin toss), so two runs
of the same workload keep the same calls.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.cri import MUTATING, parse_path
from cri_proxy.model.options import RecordConfig, parse_sample

if TYPE_CHECKING:
    from cri_proxy.recorder.prepared import PreparedCall

def method_matches(path: str, pattern: str) -> bool:
    """Whether `pattern` (a glob) names this method path.

    A pattern matches the full path (`/runtime.v1.RuntimeService/Version`), the service and
    method (`runtime.v1.RuntimeService/Version`) or the bare method name (`Version`,
    `List*`), so users can be as precise as they need.
    """
    full = path
    short = path.lstrip("/")
    name = parse_path(path).method
    return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in (full, short, name))


@dataclass
class KeepPolicy:
    include: tuple[str, ...] = ()  # empty: every method
    exclude: tuple[str, ...] = ()
    sample: tuple[tuple[str, float], ...] = ()  # (pattern, fraction kept), first match wins
    _seen: dict[str, int] = field(default_factory=dict, repr=False)
    name: ClassVar[str] = "keep"

    @classmethod
    def from_options(cls, include: list[str], exclude: list[str], sample: list[str]) -> KeepPolicy:
        return cls(tuple(include), tuple(exclude), parse_sample(sample))

    @classmethod
    def from_config(cls, config: RecordConfig) -> KeepPolicy:
        return cls.from_options(list(config.include), list(config.exclude), list(config.sample))

    @property
    def selects(self) -> bool:
        """Whether it declines any call at all."""
        return bool(self.include or self.exclude or self.sample)

    def process(self, item: PreparedCall) -> PreparedCall | None:
        """The pipeline's keep peer (admission: on the call path)."""
        return item if self.keep(item.call) else None

    def keep(self, call: RecordedCall) -> bool:
        path = call.path
        if self.include and not any(method_matches(path, p) for p in self.include):
            return False
        if any(method_matches(path, p) for p in self.exclude):
            return False
        if not self.sample or call.method in MUTATING or self.is_error(call):
            return True
        for pattern, fraction in self.sample:
            if method_matches(path, pattern):
                return self._take(path, fraction)
        return True

    @staticmethod
    def is_error(call: RecordedCall) -> bool:
        return call.failed

    def _take(self, path: str, fraction: float) -> bool:
        """Keep the calls where floor(n * fraction) steps up: exactly `fraction` of them, evenly spread."""
        n = self._seen.get(path, 0)
        self._seen[path] = n + 1
        return int((n + 1) * fraction) > int(n * fraction)

    def describe(self) -> str:
        parts = []
        if self.include:
            parts.append("only " + ", ".join(self.include))
        if self.exclude:
            parts.append("not " + ", ".join(self.exclude))
        if self.sample:
            parts.append("sampling " + ", ".join(f"{p}={f:g}" for p, f in self.sample) +
                         " (errors and state-changing calls always kept)")
        return "; ".join(parts) or "every call"
