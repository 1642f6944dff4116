"""What the metrics peer (recorder.metrics) reads when it is scraped rather than as calls end:
the calls open now (in flight, and the age of the oldest: the hung-call signal) and the spans
peer's export counters; and the (service, method) labels of a path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cri_proxy.model.cri import METHODS, parse_path
from cri_proxy.recorder.metrics_counts import CallCounts

__all__ = ["OTHER", "OpenCallGauges", "OpenCalls", "SpanCounters", "SpanCounts", "method_labels"]

OTHER: Final = "other"
# Server-streaming calls (GetContainerEvents, the Stream* lists) stay open by design: they
# count in flight but would keep the oldest-open-call age (the hung-call signal) high forever.
_STREAMING: Final = frozenset(path for path, info in METHODS.items() if info.server_streaming)
OpenCalls = Callable[[], Iterable[tuple[str, float]]]  # (path, started_at) of each call open now


class SpanCounts(Protocol):
    """What the spans peer counts (spans.CallSpans.counts returns one)."""

    @property
    def exported(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def failed_batches(self) -> int: ...


def method_labels(path: str) -> tuple[str, str]:
    """(service, method) for a CRI path; ("other", "other") for any path the table lacks."""
    if path in METHODS:
        parts = parse_path(path)
        return parts.service, parts.method
    return OTHER, OTHER


class OpenCallGauges(Collector):
    """Calls in flight per method and the oldest open unary call's age, read at scrape time
    from the tap's open calls (`CallMetrics.watch_open`): nothing is done for them per call."""

    def __init__(self, clock: Callable[[], float], counts: CallCounts) -> None:
        self.clock = clock
        self.counts = counts
        self.source: OpenCalls = tuple
        self.seen: set[tuple[str, str]] = set()  # (service, method) reported once stay reported, at 0

    def collect(self) -> Iterator[Metric]:
        open_calls = list(self.source())
        with self.counts.lock:  # every method a finished call was counted for: it was open once
            self.seen.update(self.counts.methods)
        in_flight = GaugeMetricFamily("cri_proxy_calls_in_flight", "Calls opened and not yet finished.",
                                      labels=["service", "method"])
        counts = dict.fromkeys(self.seen, 0)
        oldest: float | None = None
        for path, started in open_calls:
            key = method_labels(path)
            counts[key] = counts.get(key, 0) + 1
            if path not in _STREAMING and (oldest is None or started < oldest):
                oldest = started
        self.seen.update(counts)
        for (service, method), n in sorted(counts.items()):
            in_flight.add_metric([service, method], n)
        yield in_flight
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest)
        yield GaugeMetricFamily("cri_proxy_oldest_open_call_age_seconds",
                                "Age of the oldest open call (server-streaming calls excepted); 0 when none.",
                                value=age)


class SpanCounters(Collector):
    """The spans peer's export counters, read when scraped."""

    def __init__(self, read: Callable[[], SpanCounts]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        counts = self.read()
        yield CounterMetricFamily("cri_proxy_spans_exported", "Spans the collector accepted.",
                                  value=counts.exported)
        yield CounterMetricFamily("cri_proxy_spans_dropped", "Spans lost: export queue full, export failed, "
                                  "or unsent at shutdown.", value=counts.dropped)
        yield CounterMetricFamily("cri_proxy_span_export_failures", "Span batches the collector did not take "
                                  "(down, refused, timed out); logged once per 5 minutes.",
                                  value=counts.failed_batches)
