"""The OTLP exporter's failures, logged at a rate a node can live with for months.

With the collector down, the OpenTelemetry SDK's exporters log an error for every batch they
fail to send (and a warning for every retry): on a node whose collector is gone for a week,
thousands of identical lines a day that bury everything else. `ExportFailureLog` is a
logging filter on those loggers: the first failure is logged as it is, then for `interval_s`
the rest are only counted, and the first one after that is logged with how many were held
back. `flush()` (at shutdown) logs what is still held back. Failed batches are also counted
where they happen (spans._Counting), and exposed as `cri_proxy_span_export_failures_total`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

# Where the SDK logs export trouble (each module's getLogger(__name__)); a filter on a logger
# sees only the records logged on it, not its children's, so each one is named.
EXPORTER_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk._shared_internal",
    "cri_proxy.recorder.spans.export",  # spans._Counting's own line for an exporter that raised
)
INTERVAL_S: Final = 300.0


class ExportFailureLog(logging.Filter):
    """Lets the first warning or error through, then one line per `interval_s` with the count."""

    def __init__(self, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._lock = threading.Lock()
        self._shown_at: float | None = None
        self.held = 0  # failures counted and not logged since the last line

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "summary", False):
            return True
        with self._lock:
            now = self.clock()
            if self._shown_at is not None and now - self._shown_at < self.interval_s:
                self.held += 1
                return False
            held, self.held = self.held, 0
            self._shown_at = now
        if held:
            original = record.getMessage()
            record.msg = "%s (and %d more span export failures held back in the last %.0fs)"
            record.args = (original, held, self.interval_s)
        return True

    def flush(self) -> None:
        """Log what is held back (the process is stopping: no later failure will)."""
        with self._lock:
            held, self.held = self.held, 0
        if held:
            log.warning("spans: %d more span export failures held back since the last one logged", held,
                        extra={"summary": True})


def attach(interval_s: float = INTERVAL_S) -> ExportFailureLog:
    """A filter on every exporter logger, for one spans peer's life (detach() at its close)."""
    failures = ExportFailureLog(interval_s)
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(failures)
    return failures


def detach(failures: ExportFailureLog) -> None:
    failures.flush()
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).removeFilter(failures)
