"""The recorder process's metrics and spans peers, built from `--metrics-listen` and `--otlp-endpoint`.

The worker owns one `Telemetry`. It reads the tap's open calls when scraped (`watch`) and
gets every finished call through `ObservingSink`, before the keep peer
decides: a call the policy declines, or one skimmed while the recorder catches up, is still
counted. The metrics HTTP endpoint runs on its own thread (metrics_http); its /readyz asks
`readiness`, which combines what the relay said over the link (listening, the runtime
answering its last probe) with, under --require-recording, the database's health.

Spans get the CRI facts the ids peer reads (pod, container, image), but only for calls that
carry a traceparent or are picked by the sample ratio: decoding is the expensive part.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from cri_proxy.model.call import Direction, RecordedCall
from cri_proxy.model.link import RelayState
from cri_proxy.model.options import TelemetryConfig
from cri_proxy.model.session import RecorderStats
from cri_proxy.model.sink import CallSink
from cri_proxy.recorder.leancalls import LeanCall
from cri_proxy.recorder.metrics import CallMetrics, client_name
from cri_proxy.recorder.metrics_http import MetricsServer
from cri_proxy.recorder.spans import CallSpans, Facts, SpanOptions

if TYPE_CHECKING:
    from cri_proxy.messages.decode import JsonDecoder
    from cri_proxy.recorder.tap import ConnectionRecorder

log = logging.getLogger(__name__)

FELL_BEHIND = "fell_behind"  # skimmed: the recorder was too far behind the relay to record them
NOT_WRITTEN = "not_written"  # counted lost by the recorder: its queue was full, or the writer failed
DB_SIZE_EVERY_S = 1.0
# The ids peer's keys as span attributes, after OpenTelemetry's Kubernetes and container
# conventions (examples/metrics.md lists them); a sandbox id has no convention of its own.
FACT_NAMES = {"pod_name": "k8s.pod.name", "pod_namespace": "k8s.namespace.name", "container_id": "container.id",
              "image": "container.image.name", "pod_sandbox_id": "cri.pod_sandbox_id"}


class Telemetry:
    """The metrics and spans peers (either may be off). Never raises into the recorder's loop."""

    def __init__(self, config: TelemetryConfig, runtime_endpoint: str, *, require: bool = False,
                 db_path: str | None = None, fault: Callable[[], str | None] = lambda: None) -> None:
        self.config = config
        self.endpoint = runtime_endpoint
        self.require = require
        self.db_path = db_path
        self.fault = fault
        self.relay = RelayState()
        self.metrics = CallMetrics() if config.metrics_listen is not None else None
        self.spans: CallSpans | None = None
        if config.otlp_endpoint is not None:
            self.spans = CallSpans(SpanOptions(endpoint=config.otlp_endpoint,
                                               trace_sample_ratio=config.trace_sample_ratio))
            if self.metrics is not None:
                self.metrics.read_spans(self.spans.counts)
        self.server: MetricsServer | None = None
        self._clients: dict[int, str] = {}
        self._lost_seen = 0  # the recorder's lost count already fed to the metrics peer
        self._skimmed = 0  # of those, the ones counted as FELL_BEHIND
        self._api: str | None = None
        self._db_size_at = 0.0
        self._decoder: JsonDecoder | None = None

    def start(self) -> None:
        """Serve /metrics (OSError when the address cannot be bound)."""
        if self.metrics is not None and self.config.metrics_listen is not None:
            self.server = self.metrics.serve(self.config.metrics_listen, self.readiness)

    def readiness(self) -> str | None:
        reason = self.relay.reason()
        if reason is None and self.require:
            fault = self.fault()
            if fault is not None:
                return f"recording is failing and --require-recording is set: {fault}"
        return reason

    # -- calls ------------------------------------------------------------------------------
    def watch(self, conns: Mapping[int, ConnectionRecorder]) -> None:
        """The tap's connections (the worker's, by conn id): their open calls are the metrics'
        calls in flight, read at each scrape."""
        if self.metrics is not None:
            self.metrics.watch_open(lambda: open_calls(conns))

    def observe(self, call: RecordedCall) -> None:
        try:
            if self.metrics is not None:
                self.metrics.observe(call)
            if self.spans is not None:
                self.spans.observe(call, self._facts(call))
        except Exception:
            log.debug("call %d/%d %s: the metrics or spans peer failed", call.conn_id, call.stream_id, call.path,
                      exc_info=True)

    submit = observe  # a CallSink: without a database (recorder.nowriter) the tap's calls come straight here

    def tally(self) -> CallMetrics | None:
        """Where recorder.leantap may count a plain call itself, not built: the metrics peer,
        when it is the only one a call goes to (no spans)."""
        return self.metrics if self.spans is None else None

    def skimmed(self, call: RecordedCall) -> None:
        """A call followed but not recorded (the recorder fell behind): counted, and lost."""
        self.observe(call)
        self._skimmed += 1
        if self.metrics is not None:
            self.metrics.lost(FELL_BEHIND)

    def _facts(self, call: RecordedCall) -> Facts | None:
        if not self.config.trace_sample_ratio and not any(name == "traceparent" for name, _ in call.request_metadata):
            return None  # no span will be made: not worth decoding
        from cri_proxy.messages.decode import JsonDecoder  # protobuf: only once a span needs facts
        from cri_proxy.recorder.ids import call_ids, concerns_ids
        from cri_proxy.recorder.pipeline import PreparedCall

        if not concerns_ids(call.path):
            return None
        if self._decoder is None:
            self._decoder = JsonDecoder()
        item = PreparedCall.of(call)
        item.decoder = self._decoder
        ids = call_ids(call.path, item.first(Direction.REQUEST), item.first(Direction.RESPONSE))
        return {FACT_NAMES[key]: value for key, value in ids.items() if value and key in FACT_NAMES}

    # -- facts that are not calls -----------------------------------------------------------
    def connection_opened(self, conn_id: int, peer_pid: int | None, peer_name: str | None = None) -> None:
        if self.metrics is not None:
            name = self._clients[conn_id] = client_name(peer_pid, peer_name)
            self.metrics.connection_opened(name)

    def connection_closed(self, conn_id: int) -> None:
        name = self._clients.pop(conn_id, None)
        if self.metrics is not None and name is not None:
            self.metrics.connection_closed(name)

    def relay_changed(self, state: RelayState) -> None:
        self.relay = state
        self._upstream()

    def session_changed(self, changes: dict[str, str | None]) -> None:
        if changes.get("runtime_api"):
            self._api = changes["runtime_api"]
            self._upstream()

    def _upstream(self) -> None:
        if self.metrics is not None and self.relay.listening:
            self.metrics.upstream_changed(self.endpoint, self.relay.trouble is None, self._api)

    def tick(self, stats: RecorderStats, now: float, lag_s: float) -> None:
        """The recorder's counters, as of its last report: losses, lag, the database's size."""
        if self.metrics is None:
            return
        lost = stats.lost - self._lost_seen - self._skimmed
        if lost > 0:
            self.metrics.lost(NOT_WRITTEN, lost)
        self._lost_seen, self._skimmed = stats.lost, 0
        self.metrics.lag(lag_s)
        if self.db_path is not None and now >= self._db_size_at + DB_SIZE_EVERY_S:
            self._db_size_at = now
            self.metrics.db_size(sum(_size(self.db_path + tail) for tail in ("", "-wal", "-shm")))

    def close(self) -> None:
        if self.spans is not None:
            self.spans.close()
        if self.server is not None:
            self.server.close()


def open_calls(conns: Mapping[int, ConnectionRecorder]) -> list[tuple[str, float]]:
    """(path, started_at) of every call the tap has open. Called on the scrape's thread while
    the recorder's thread changes these dicts: each is copied by one list() of its values,
    which runs no Python code, so the interpreter cannot switch threads in the middle of it.
    A call caught between its entry and its path (the tap sets that next) waits for the next
    scrape, unless its headers were unreadable (no path to come: counted as `other`). A call
    of the lean tap's (recorder.leancalls.LeanCall) has its path from the start."""
    found = []
    for conn in list(conns.values()):
        for call in list(conn.calls.values()):
            if type(call) is LeanCall:
                if call.facts.path:  # as below: a LeanCall is never unparsed
                    found.append((call.facts.path, call.started_at))
            elif call.rec.path or call.unparsed:
                found.append((call.rec.path, call.rec.started_at))
    return found


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class ObservingSink:
    """The tap's sink: each finished call goes to the telemetry peers, then to the recorder (keep, writer)."""

    def __init__(self, telemetry: Telemetry, recorder: CallSink) -> None:
        self.telemetry = telemetry
        self.recorder = recorder

    def submit(self, call: RecordedCall) -> None:
        self.telemetry.observe(call)
        self.recorder.submit(call)
