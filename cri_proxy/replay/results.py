"""What a replay found: one `CallResult` per selected call, and the totals per method."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cri_proxy.model.cri import parse_path
from cri_proxy.replay.compare import Difference


class Verdict(str, Enum):
    MATCHED = "matched"  # same status, and the answers agree outside the ignored fields
    DIFFERED = "differed"  # same status, different answers
    FAILED = "failed"  # another status code (an error where the recording had none, or the reverse)
    SKIPPED = "skipped"  # not sent: state-changing without --allow-mutations, bytes not stored...


VERDICTS = tuple(Verdict)


@dataclass(slots=True)
class CallResult:
    call_id: int  # the recorded call
    path: str
    verdict: Verdict
    reason: str = ""  # one line: why it was skipped, failed or differed
    recorded_status: str | None = None
    replayed_status: str | None = None
    replayed_message: str | None = None
    differences: list[Difference] = field(default_factory=list)
    redacted: bool = False  # the recorded request had secrets blanked: what was sent was too
    duration_ms: float | None = None

    @property
    def method(self) -> str:
        return parse_path(self.path).method

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "method": self.method, "path": self.path, "result": self.verdict.value,
            "reason": self.reason, "recorded_status": self.recorded_status,
            "replayed_status": self.replayed_status, "replayed_message": self.replayed_message,
            "redacted": self.redacted, "duration_ms": self.duration_ms,
            "differences": [d.as_dict() for d in self.differences],
        }  # fmt: skip


@dataclass(slots=True)
class ReplayResult:
    source: str
    target: str
    source_sessions: list[int]
    replay_session: int | None
    db_out: str | None  # where the replay was recorded (None: nowhere)
    results: list[CallResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    def counts(self) -> Counter[Verdict]:
        return Counter(r.verdict for r in self.results)

    @property
    def ok(self) -> bool:
        counts = self.counts()
        return counts[Verdict.DIFFERED] == 0 and counts[Verdict.FAILED] == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def per_method(self) -> list[tuple[Any, ...]]:
        """(method, calls, matched, differed, failed, skipped) rows, by method name."""
        table: dict[str, Counter[Verdict]] = {}
        for r in self.results:
            table.setdefault(r.method, Counter())[r.verdict] += 1
        return [(m, sum(c.values()), *(c[v] for v in VERDICTS)) for m, c in sorted(table.items())]

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        return {"calls": len(self.results), **{v.value: counts[v] for v in VERDICTS},
                "redacted_sent": sum(1 for r in self.results if r.redacted and r.verdict is not Verdict.SKIPPED),
                "ok": self.ok}  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": {"db": self.source, "sessions": self.source_sessions},
            "target": self.target,
            "replay": {"db": self.db_out, "session": self.replay_session},
            "elapsed_s": round(self.elapsed_s, 3),
            "summary": self.summary(),
            "methods": [dict(zip(("method", "calls", *(v.value for v in VERDICTS)), row)) for row in self.per_method()],
            "calls": [r.as_dict() for r in self.results],
        }
