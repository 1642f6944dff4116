"""The metrics peer's per-call counts: plain numbers on the recorder's hot path, handed to
prometheus_client as metric families when scraped.

A prometheus_client Counter or Histogram child takes a lock and makes a few calls for each
update, and a finished call updated six of them (calls, failures, duration, request and
response bytes, client calls): measured with benchmarks/metrics_cpu.py, that was a fifth of
what the recorder process spent on a small call in metrics-only mode. Here a call costs a
dict look-up, a `bisect` for its duration bucket and a few integer additions, done on the
recorder's one thread; the scrape (on the HTTP server's thread) reads the numbers and builds
the families prometheus_client writes out, with the same names, help, labels, buckets and
`_created` series the Counter and Histogram gave. Only new label sets, which are rare and
bounded (metrics.method_labels, the capped client names), take the lock, against the
scrape's copy of the tables; a scrape may see a call counted in one family and not yet in
the next, as with prometheus_client's own per-value locks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence

from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CALLS_HELP = "Finished calls, by method and status name (or how they ended without one)."
FAILED_HELP = "Finished calls that failed: anything but a completed call with grpc-status 0."
DURATION_HELP = "Call duration as the relay saw it, from request headers to the end of the call."
REQUEST_HELP = "Request message bytes (gRPC prefix excluded)."
RESPONSE_HELP = "Response message bytes (gRPC prefix excluded)."
PER_CALL = ("service", "method")


def _created() -> bool:
    # prometheus_client's switch for the `_created` series (PROMETHEUS_DISABLE_CREATED_SERIES,
    # disable_created_metrics()), so these families follow it as its own Counters do.
    return bool(getattr(prometheus_metrics, "_use_created", True))


class Count:
    """One counter's value for one label set."""

    __slots__ = ("labels", "created", "n")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.created = time.time()
        self.n = 0


class MethodCounts:
    """What is counted per (service, method): the duration histogram, failures, message bytes."""

    __slots__ = ("labels", "created", "buckets", "sum", "failures", "request", "response")

    def __init__(self, labels: tuple[str, str], buckets: int) -> None:
        self.labels = labels
        self.created = time.time()
        self.buckets = [0] * buckets  # per bucket, not cumulative: the call's own bucket only
        self.sum = 0.0
        self.failures = 0
        self.request = 0
        self.response = 0


class CallCounts(Collector):
    """cri_proxy_calls, _calls_failed, _call_duration_seconds, _request_bytes, _response_bytes."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = (*buckets, math.inf)  # bisect_left: the first bound >= the duration, as Histogram
        self._names = [floatToGoString(bound) for bound in self.bounds]
        self.lock = threading.Lock()
        self.methods: dict[tuple[str, str], MethodCounts] = {}
        self.codes: dict[tuple[str, str, str], Count] = {}

    def entry(self, service: str, method: str, code: str) -> tuple[Count, MethodCounts]:
        """The counts of this label set, made on first use (under the lock the scrape copies with)."""
        with self.lock:
            per = self.methods.get((service, method))
            if per is None:
                per = self.methods[(service, method)] = MethodCounts((service, method), len(self.bounds))
            count = self.codes.get((service, method, code))
            if count is None:
                count = self.codes[(service, method, code)] = Count((service, method, code))
        return count, per

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            methods = list(self.methods.values())
            codes = list(self.codes.values())
        created = _created()
        calls = CounterMetricFamily("cri_proxy_calls", CALLS_HELP, labels=[*PER_CALL, "code"])
        for count in codes:
            calls.add_metric(count.labels, count.n, created=count.created if created else None)
        yield calls
        failures = CounterMetricFamily("cri_proxy_calls_failed", FAILED_HELP, labels=PER_CALL)
        request = CounterMetricFamily("cri_proxy_request_bytes", REQUEST_HELP, labels=PER_CALL)
        response = CounterMetricFamily("cri_proxy_response_bytes", RESPONSE_HELP, labels=PER_CALL)
        duration = HistogramMetricFamily("cri_proxy_call_duration_seconds", DURATION_HELP, labels=PER_CALL)
        for per in methods:
            when = per.created if created else None
            failures.add_metric(per.labels, per.failures, created=when)
            request.add_metric(per.labels, per.request, created=when)
            response.add_metric(per.labels, per.response, created=when)
            self._histogram(duration, per, when)
        yield failures
        yield duration
        yield request
        yield response

    def _histogram(self, family: HistogramMetricFamily, per: MethodCounts, created: float | None) -> None:
        total = 0
        cumulative = []
        for name, n in zip(self._names, list(per.buckets)):
            total += n
            cumulative.append((name, float(total)))
        family.add_metric(per.labels, cumulative, per.sum)
        if created is not None:
            family.samples.append(Sample(family.name + "_created", dict(zip(PER_CALL, per.labels)), created, None))


class ClientCounts(Collector):
    """cri_proxy_client_calls: finished calls by client process name (a bounded set of names)."""

    def __init__(self, help_text: str) -> None:
        self.help = help_text
        self.lock = threading.Lock()
        self.clients: dict[str, Count] = {}

    def count(self, label: str) -> Count:
        with self.lock:
            count = self.clients.get(label)
            if count is None:
                count = self.clients[label] = Count((label,))
        return count

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            counts = list(self.clients.values())
        created = _created()
        family = CounterMetricFamily("cri_proxy_client_calls", self.help, labels=["client"])
        for count in counts:
            family.add_metric(count.labels, count.n, created=count.created if created else None)
        yield family
