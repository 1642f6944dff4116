"""The metrics peer: Prometheus counters, histograms and gauges fed with recorded calls.

A peer of the writer in the recorder's pipeline: the tap hands it every finished call
(`observe`, counted in plain numbers: metrics_counts) and lets it read the calls still open
(`watch_open`, read at scrape time: metrics_scrape); the recorder and the relay's link tell
it the facts that are not calls (upstream up or down and what it speaks, calls lost, lag,
database size, client connections). Everything lives in this peer's own
`CollectorRegistry`, never prometheus_client's global one, so two peers (or a test and the
process) never share series. `metrics_http.serve` exposes the registry.

What is computed at scrape time is computed from the tap's open calls, not pushed: calls in
flight and the age of the oldest open call, so a call the runtime holds open shows within one
scrape without anything having to tick. Label values are bounded: a method neither CRI
version defines is counted as `other`, and client process names and fault rule names are
capped.
"""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.cri import METHODS
from cri_proxy.model.status import StatusCode, failed, status_name
from cri_proxy.recorder.metrics_counts import (
    PER_CALL,
    CallCounts,
    ClientCounts,
    Count,
    MethodCounts,
)
from cri_proxy.recorder.metrics_http import MetricsServer, Readiness, serve
from cri_proxy.recorder.metrics_scrape import (
    OTHER,
    OpenCallGauges,
    OpenCalls,
    SpanCounters,
    SpanCounts,
    method_labels,
)
from cri_proxy.recorder.notes import NoteKind, note_kind

__all__ = ["DURATION_BUCKETS", "MAX_CLIENTS", "MAX_RULES", "OTHER", "CallMetrics", "SpanCounts", "client_name",
           "code_label", "method_labels"]

# 100 us (a cached Version answered on the node) up to the kubelet's 2-minute CRI deadline.
DURATION_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                           0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MAX_CLIENTS: Final = 20
MAX_RULES: Final = 50  # fault rule names kept as labels; rules come and go through the control socket
# A fault rule's note on the call it changed (cri_proxy.proxy.faultwire): `fault: RULE ACTION [DETAIL]`.
# The action is matched from the right, so a rule's name may hold spaces.
_FAULT_NOTE: Final = re.compile(r"fault: (?P<rule>.+) (?P<action>error|delay|hang|close)(?: \S+)?")
_CODE_NAMES: Final = {int(code): str(status_name(code)) for code in StatusCode}
_COMPLETED: Final = Outcome.COMPLETED  # by identity: an enum's `.value` is a Python-level descriptor


def code_label(call: RecordedCall) -> str:
    """The status name, or how the call ended when no status arrived ("no_status" if it completed).

    A code gRPC does not define is `CODE_OTHER`: the label set stays bounded whatever arrives.
    """
    if call.status_code is not None:
        return _CODE_NAMES.get(call.status_code, "CODE_OTHER")
    outcome = call.outcome
    return "no_status" if outcome is _COMPLETED else outcome.value


def client_name(pid: int | None, name: str | None = None) -> str:
    """The client's process name: as the relay read it at accept, else from /proc (`unknown`
    when the pid is gone or was never known)."""
    if name:
        return name
    if pid is None:
        return "unknown"
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


class CallMetrics:
    """The metrics peer. `observe` is cheap and never raises on a strange call."""

    def __init__(self, registry: CollectorRegistry | None = None, *, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.time, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.max_clients = max_clients
        reg = self.registry
        per_call = list(PER_CALL)
        # Updated once per call: plain numbers, read when scraped (metrics_counts).
        self.counts = CallCounts(DURATION_BUCKETS)
        reg.register(self.counts)
        self.warnings = Counter("cri_proxy_translation_warnings", "Translation warnings noted on bridged calls.",
                                per_call, registry=reg)
        self.refusals = Counter("cri_proxy_translation_refusals", "Calls the bridge refused to translate.",
                                per_call, registry=reg)
        self.faults = Counter("cri_proxy_faults_injected", "Calls a fault rule changed, by rule (at most "
                              f"{MAX_RULES} names, the rest as other) and action.", ["rule", "action"], registry=reg)
        self.connections = Gauge("cri_proxy_connections_open", "Client connections open, by client process "
                                 f"name (at most {max_clients} names, the rest as other).", ["client"], registry=reg)
        self.client_calls = ClientCounts(f"Finished calls by client process name (at most {max_clients} names, "
                                         "the rest as other).")
        reg.register(self.client_calls)
        self.upstream_up = Gauge("cri_proxy_upstream_up", "1 when the upstream answered its last probe, else 0.",
                                 ["endpoint"], registry=reg)
        self.upstream_api = Info("cri_proxy_upstream_api", "The CRI version the upstream speaks.",
                                 ["endpoint"], registry=reg)
        self.lost_calls = Counter("cri_proxy_recorder_calls_lost", "Calls the recorder could not record, by "
                                  "reason.", ["reason"], registry=reg)
        self.lag_seconds = Gauge("cri_proxy_recorder_lag_seconds", "How far the recorder is behind the relay.",
                                 registry=reg)
        self.database_bytes = Gauge("cri_proxy_database_bytes", "Size of the recording's SQLite files.",
                                    registry=reg)
        self.open = OpenCallGauges(clock, self.counts)
        reg.register(self.open)
        if process:
            ProcessCollector(registry=reg)
        self._entries: dict[tuple[str, str], tuple[Count, MethodCounts]] = {}  # (path, code)
        self._clients: set[str] = set()
        self._client_counts: dict[str, Count] = {}
        self._rules: set[str] = set()

    # Calls -------------------------------------------------------------------------------
    def watch_open(self, source: OpenCalls) -> None:
        """Where the calls open now are read at each scrape (telemetry.open_calls: the tap's),
        for the calls in flight and the age of the oldest."""
        self.open.source = source

    def observe(self, call: RecordedCall) -> None:
        """A finished call (any outcome): counted and timed."""
        status = call.status_code  # code_label, inline for a call with a status (nearly all)
        code = _CODE_NAMES.get(status, "CODE_OTHER") if status is not None else code_label(call)
        entry = self._entries.get((call.path, code))
        if entry is None:
            entry = self._entry(call.path, code)
        count, per = entry
        count.n += 1
        duration = call.duration_s
        if duration is not None:
            per.buckets[bisect_left(self.counts.bounds, duration)] += 1
            per.sum += duration
        outcome = call.outcome
        if failed("completed" if outcome is _COMPLETED else outcome.value, status):
            per.failures += 1
        per.request += call.request_bytes
        per.response += call.response_bytes
        if call.notes:
            self._notes(call)
        name = call.peer_name or "unknown"
        client = self._client_counts.get(name)
        if client is None:
            client = self._client_count(name)
        client.n += 1

    def tally_entry(self, path: str, status: int) -> tuple[Count, MethodCounts, int] | None:
        """What a completed call of `path` with grpc-status `status` and no note adds to, as
        `observe` counts it: its (service, method, code) counter, its method's counts, and 1
        if it failed. None for a path the table lacks (`observe` counts those, uncached).
        For recorder.leantap, which counts such calls without building them."""
        if path not in METHODS:
            return None
        count, per = self._entry(path, _CODE_NAMES.get(status, "CODE_OTHER"))
        return count, per, int(failed("completed", status))

    def client_count(self, name: str) -> Count:
        """The cri_proxy_client_calls counter of a client process name (capped names: `other`)."""
        client = self._client_counts.get(name)
        return client if client is not None else self._client_count(name)

    def _client_count(self, name: str) -> Count:
        label = self._client_label(name)
        count = self.client_calls.count(label)
        if label == name:  # names past the cap share `other` and are not cached one by one
            self._client_counts[name] = count
        return count

    def _entry(self, path: str, code: str) -> tuple[Count, MethodCounts]:
        # Made once per (path, status) and cached. Paths the table lacks share the ("other",
        # code) entry, so a client sending odd paths cannot grow the cache (they take this
        # slower path each time instead).
        service, method = method_labels(path)
        key = (path, code) if service != OTHER else (OTHER, code)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = self.counts.entry(service, method, code)
        return entry

    def _notes(self, call: RecordedCall) -> None:
        service, method = method_labels(call.path)
        for note in call.notes:
            kind = note_kind(note)
            if kind is NoteKind.WARNING:
                self.warnings.labels(service, method).inc()
            elif kind is NoteKind.REFUSAL:
                self.refusals.labels(service, method).inc()
            elif note.startswith("fault: "):
                self._fault(note)

    def _fault(self, note: str) -> None:
        found = _FAULT_NOTE.fullmatch(note)
        if found is None:
            return
        rule = found["rule"]
        if rule not in self._rules:
            if len(self._rules) >= MAX_RULES:
                rule = OTHER
            else:
                self._rules.add(rule)
        self.faults.labels(rule, found["action"]).inc()

    # Facts that are not calls ------------------------------------------------------------
    def connection_opened(self, client: str) -> None:
        self.connections.labels(self._client_label(client)).inc()

    def connection_closed(self, client: str) -> None:
        self.connections.labels(self._client_label(client)).dec()

    def _client_label(self, client: str) -> str:
        if client in self._clients:
            return client
        if len(self._clients) >= self.max_clients:
            return OTHER
        self._clients.add(client)
        return client

    def upstream_changed(self, endpoint: str, up: bool, api: str | None = None) -> None:
        """The prober's latest word on an upstream: reachable or not, and the CRI version it speaks."""
        self.upstream_up.labels(endpoint).set(1 if up else 0)
        if api is not None:
            self.upstream_api.labels(endpoint).info({"api": api})

    def lost(self, reason: str, n: int = 1) -> None:
        if n > 0:
            self.lost_calls.labels(reason).inc(n)

    def lag(self, seconds: float) -> None:
        self.lag_seconds.set(max(0.0, seconds))

    def db_size(self, n: int) -> None:
        self.database_bytes.set(n)

    def serve(self, listen: str, ready: Readiness | None = None, poll_interval_s: float = 0.5) -> MetricsServer:
        """Serve /metrics, /healthz, /readyz on `listen` (HOST:PORT or unix:///path) from a thread;
        `poll_interval_s` bounds how long close() waits (see MetricsServer)."""
        return serve(listen, self.registry, ready, poll_interval_s)

    def read_spans(self, counts: Callable[[], SpanCounts]) -> None:
        """Expose the spans peer's exported and dropped counters (read at each scrape)."""
        self.registry.register(SpanCounters(counts))
