"""The spans peer: an OpenTelemetry span for each traced call, exported over OTLP.

A peer of the writer in the recorder's pipeline, fed with finished calls. A call whose
request metadata carries a sampled W3C `traceparent` (the kubelet's own client span, when
its tracing is on) gets a span that is that span's child; with `trace_sample_ratio` above 0,
calls without one get root spans, chosen by the SDK's trace-id ratio sampler (so the choice
is a function of the trace id, as everywhere else in OpenTelemetry). A traceparent whose
sampled flag is off is respected: no span. Start and end are the relay's own timestamps.

Spans leave through the SDK's BatchSpanProcessor and an OTLP exporter (gRPC or HTTP) on the
processor's own thread: `observe` only queues. The queue is bounded: when the collector is
down or slow, spans past the bound are dropped and counted (`counts()`, which the metrics
peer exposes), never waited for.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.cri import parse_path
from cri_proxy.model.errors import ConfigError
from cri_proxy.model.status import failed, status_name
from cri_proxy.recorder import span_failures
from cri_proxy.recorder.notes import note_kind

log = logging.getLogger(__name__)
_export_log = logging.getLogger(__name__ + ".export")  # rate-limited (span_failures)

PROTOCOLS: Final = ("grpc", "http/protobuf")
_PROPAGATOR: Final = TraceContextTextMapPropagator()
Facts = Mapping[str, AttributeValue]
# W3C trace-flags bytes with the sampled bit clear, as the header spells them (lower-case hex).
_UNSAMPLED: Final = frozenset(f"{flags:02x}" for flags in range(0, 256, 2))


@dataclass(frozen=True, slots=True)
class SpanOptions:
    """How spans are made and sent. None means: the OTEL_EXPORTER_OTLP_* variable, else the SDK default."""

    endpoint: str | None = None  # "http://127.0.0.1:4317", "unix:///run/otel/otlp.sock", ".../v1/traces"
    protocol: str | None = None  # "grpc" or "http/protobuf"
    trace_sample_ratio: float = 0.0  # root spans for calls without a traceparent
    max_queue_size: int = 2048  # spans held for export at most; past it they are dropped
    max_export_batch_size: int = 512
    schedule_delay_s: float = 1.0
    export_timeout_s: float | None = None  # one export, retries included
    service_name: str = "cri-proxy"
    host_name: str | None = None  # the resource's host.name (None: this host; `export` gives the recording's)
    failure_log_interval_s: float = span_failures.INTERVAL_S  # export failures: one log line per interval

    def check(self) -> None:
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ConfigError(f"trace sample ratio {self.trace_sample_ratio}: must be from 0 to 1")
        if self.resolved_protocol() not in PROTOCOLS:
            raise ConfigError(f"OTLP protocol {self.resolved_protocol()!r}: expected grpc or http/protobuf")
        if self.max_queue_size < 1 or not 1 <= self.max_export_batch_size <= self.max_queue_size:
            raise ConfigError("span queue: need 1 <= export batch size <= queue size")

    def resolved_protocol(self) -> str:
        return (self.protocol or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")


def make_exporter(options: SpanOptions) -> SpanExporter:
    """The OTLP exporter the options name; the exporter itself reads the remaining OTEL_* variables."""
    if options.resolved_protocol() == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=options.endpoint, timeout=options.export_timeout_s)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    endpoint = (options.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    # A unix socket is local: plaintext, or the exporter would try TLS (it reads only http:// as insecure).
    insecure = True if endpoint is not None and endpoint.startswith("unix:") else None
    return GrpcExporter(endpoint=endpoint, insecure=insecure, timeout=options.export_timeout_s)


@dataclass(frozen=True, slots=True)
class SpanCounts:
    made: int  # spans handed to the export queue
    exported: int  # accepted by the collector
    dropped: int  # queue full, export failed, or unsent at shutdown
    queue_full: int
    failed_batches: int = 0  # exports that failed (collector down, refused, timed out)


class _Counting(SpanExporter):
    """Wraps the real exporter to count what it sent and what it lost, batch by batch."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.outstanding = 0  # made, not yet through an export
        self.exported = 0
        self.failed = 0
        self.failed_batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # the SDK would log it and lose the batch: count it lost instead
            _export_log.warning("spans: exporting %d spans failed", len(spans), exc_info=True)
            result = SpanExportResult.FAILURE
        with self.lock:
            self.outstanding -= len(spans)
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
                self.failed_batches += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CallSpans:
    """The spans peer. `observe` never blocks on export and never raises on a strange call."""

    def __init__(self, options: SpanOptions | None = None, exporter: SpanExporter | None = None) -> None:
        self.options = options = options or SpanOptions()
        options.check()
        self._ratio = options.trace_sample_ratio
        self._exporter = _Counting(exporter if exporter is not None else make_exporter(options))
        self._processor = BatchSpanProcessor(
            self._exporter, max_queue_size=options.max_queue_size,
            max_export_batch_size=options.max_export_batch_size,
            schedule_delay_millis=options.schedule_delay_s * 1000)
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over these defaults, as the SDK has it.
        defaults = {"service.name": options.service_name, "host.name": options.host_name or socket.gethostname()}
        env_name = os.environ.get("OTEL_SERVICE_NAME")
        if env_name:
            defaults["service.name"] = env_name
        self._provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(self._ratio)),
                                        resource=Resource.create(defaults))
        self._provider.add_span_processor(self._processor)
        self._tracer = self._provider.get_tracer("cri_proxy.recorder.spans")
        self._queue_full = 0
        self._closed = False
        self._failures = span_failures.attach(options.failure_log_interval_s)

    def observe(self, call: RecordedCall, facts: Facts | None = None) -> None:
        """A finished call; `facts` are CRI attributes found by the decoder (pod, container, image)."""
        traceparent = None
        for name, value in call.request_metadata:
            if name == "traceparent":
                traceparent = value
                break
        if traceparent is None:
            if not self._ratio:
                return  # the common case costs one scan of the metadata
        elif len(traceparent) == 55 and traceparent.startswith("00-") and traceparent[-2:] in _UNSAMPLED:
            return  # the caller chose not to sample (W3C flags, bit 0): ParentBased would drop it anyway
        context = _PROPAGATOR.extract(dict(call.request_metadata)) if traceparent is not None else None
        start = int(call.started_at * 1e9)
        parts = parse_path(call.path)
        span = self._tracer.start_span(
            f"{parts.service}/{parts.method}" if parts.method else "unknown", context=context,
            kind=SpanKind.SERVER, attributes=_attributes(call, parts.service, parts.method, facts),
            start_time=start)
        if not span.is_recording():
            return  # not sampled: the traceparent's flag said so, or the ratio did
        with self._exporter.lock:
            full = self._exporter.outstanding >= self.options.max_queue_size
            if not full:
                self._exporter.outstanding += 1
        if full:  # the collector is behind or down: drop it here, unended, so the SDK never sees it
            self._queue_full += 1
            return
        for note in call.notes:
            span.add_event(note_kind(note).value, {"message": note}, timestamp=start)
        if failed(call.outcome.value, call.status_code):
            what = status_name(call.status_code) or call.outcome.value
            span.set_status(Status(StatusCode.ERROR, f"{what}: {call.status_message}"
                                   if call.status_message else what))
        # A call cut off by its connection closing has no duration: it ends when it was seen to.
        span.end(start + int(call.duration_s * 1e9) if call.duration_s is not None else None)

    def counts(self) -> SpanCounts:
        ex = self._exporter
        with ex.lock:
            unsent = ex.outstanding if self._closed else 0
            made = ex.exported + ex.failed + ex.outstanding
            return SpanCounts(made, ex.exported, self._queue_full + ex.failed + unsent, self._queue_full,
                              ex.failed_batches)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Export everything queued (blocks: not for the recorder's loop)."""
        return self._provider.force_flush(int(timeout_s * 1000))

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, waiting at most about `timeout_s` (plus one export's timeout)."""
        if self._closed:
            return
        done = threading.Thread(target=self._provider.shutdown, name="spans-shutdown", daemon=True)
        done.start()
        done.join(timeout_s)
        if done.is_alive():  # the collector is not answering: stop the exporter's retries
            log.warning("spans: the collector did not take the last spans within %.0fs; dropping them", timeout_s)
            self._exporter.shutdown()
            done.join(timeout_s)
        self._closed = True
        span_failures.detach(self._failures)
        counts = self.counts()
        if counts.dropped:
            log.warning("spans: %d of %d spans were not exported (%d with the queue full)",
                        counts.dropped, counts.made + counts.queue_full, counts.queue_full)


def _attributes(call: RecordedCall, service: str, method: str, facts: Facts | None) -> dict[str, AttributeValue]:
    """The RPC semantic conventions' attributes, the call's own CRI facts, then the decoder's."""
    attrs: dict[str, AttributeValue] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                                        "cri.outcome": call.outcome.value, "cri.upstream": call.upstream}
    if call.status_code is not None:
        attrs["rpc.grpc.status_code"] = call.status_code
    if call.client_api is not None:
        attrs["cri.client_api"] = call.client_api
    if call.upstream_api is not None:
        attrs["cri.upstream_api"] = call.upstream_api
    if call.client_api is not None and call.upstream_api is not None:
        attrs["cri.translated"] = call.client_api != call.upstream_api
    if call.peer_pid is not None:
        attrs["cri.client.pid"] = call.peer_pid
    if call.peer_uid is not None:
        attrs["cri.client.uid"] = call.peer_uid
    if call.peer_name:
        attrs["cri.client.name"] = call.peer_name
    attrs["cri.request_bytes"] = call.request_bytes
    attrs["cri.response_bytes"] = call.response_bytes
    if facts:
        attrs.update(facts)
    return attrs
