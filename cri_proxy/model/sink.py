"""Where recorded calls go: the seam between whoever sees calls (tap, bridge) and the recorder."""

from __future__ import annotations

from typing import Protocol

from cri_proxy.model.call import RecordedCall


class CallSink(Protocol):
    def submit(self, call: RecordedCall) -> None:
        """Take a finished call. Must not block and must not raise: it runs on the call path."""


class MemorySink:
    """Keeps calls in a list: for tests and for tools that want calls without a database."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []

    def submit(self, call: RecordedCall) -> None:
        self.calls.append(call)
