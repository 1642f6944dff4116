"""The spans peer (cri_proxy/recorder/spans.py), exporting to a real OTLP receiver (tests/helpers/otlp.py)."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import pytest
import yaml

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.errors import ConfigError
from cri_proxy.recorder.spans import CallSpans, SpanOptions
from cri_proxy.recorder.metrics_http import DEFAULT_LISTEN
from tests.conftest import ROOT
from tests.helpers.calls import make_call
from tests.helpers.otlp import grpc_receiver, http_receiver

SPAN_KIND_SERVER = 2  # opentelemetry.proto.trace.v1.Span.SpanKind
STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode


def fast(endpoint: str | None = None, ratio: float = 0.0) -> SpanOptions:
    """Options that export within tens of milliseconds, in small batches."""
    return SpanOptions(endpoint=endpoint, trace_sample_ratio=ratio, schedule_delay_s=0.05, max_export_batch_size=8)


def traced(call: RecordedCall, n: int, flags: str = "01") -> RecordedCall:
    """The call with a W3C traceparent: trace id n, parent span id n + 0xabc."""
    call.request_metadata.append(("traceparent", f"00-{n:032x}-{n + 0xABC:016x}-{flags}"))
    return call


def test_one_child_span_per_traced_call(sock_dir: pathlib.Path) -> None:
    failing = traced(make_call("ContainerStatus", status=5, message="no such container", stream_id=3), 2)
    noted = traced(make_call("CreateContainer", stream_id=5, version="v1"), 3)
    noted.upstream_api = "v1alpha2"
    noted.notes = ["translated v1 -> v1alpha2", "v1-only fields ignored by the v1alpha2 runtime: x.y"]
    cut = traced(make_call("StopContainer", status=None, outcome=Outcome.CANCELLED, stream_id=7), 4)
    fed = [traced(make_call("Version", {}, {"version": "0.1.0"}), 1), failing, noted, cut]
    untraced = [make_call("ListContainers"), traced(make_call("ListImages"), 9, flags="00")]
    facts = {"k8s.pod.name": "web", "k8s.namespace.name": "shop", "cri.redacted": True}
    with grpc_receiver(f"unix://{sock_dir}/otlp.sock") as receiver:
        spans = CallSpans(fast(receiver.endpoint))
        for call in fed[:2] + untraced + fed[2:]:
            spans.observe(call, facts if call is noted else None)
        spans.close()
        got = {r.span.trace_id: r for r in receiver.wait_for(len(fed))}
        assert len(receiver.items) == len(fed)  # nothing for the untraced and the unsampled
    assert spans.counts().exported == 4 and spans.counts().dropped == 0
    for n, call in enumerate(fed, 1):
        item = got[n.to_bytes(16, "big")]
        span = item.span
        assert span.parent_span_id == (n + 0xABC).to_bytes(8, "big")
        assert span.name == f"runtime.v1.{'RuntimeService'}/{call.method}"
        assert span.kind == SPAN_KIND_SERVER
        assert span.start_time_unix_nano == int(call.started_at * 1e9)
        assert span.end_time_unix_nano - span.start_time_unix_nano == pytest.approx(call.duration_s * 1e9, abs=2)
        attrs = item.attributes
        assert attrs["rpc.system"] == "grpc" and attrs["rpc.method"] == call.method
        assert attrs["rpc.service"] == "runtime.v1.RuntimeService"
        assert attrs.get("rpc.grpc.status_code") == call.status_code
        assert (span.status.code == STATUS_ERROR) is call.failed
        assert item.resource["service.name"] == "cri-proxy"
    assert got[(2).to_bytes(16, "big")].span.status.message == "NOT_FOUND: no such container"
    assert got[(4).to_bytes(16, "big")].span.status.message == "cancelled"
    doc = (ROOT / "examples" / "metrics.md").read_text()
    names = {key for item in got.values() for key in item.attributes}
    assert not sorted(n for n in names if f"| `{n}` |" not in doc), "span attributes missing in metrics.md"
    noted_span = got[(3).to_bytes(16, "big")]
    assert noted_span.attributes["k8s.pod.name"] == "web" and noted_span.attributes["cri.redacted"] is True
    assert noted_span.attributes["cri.translated"] is True
    assert [(e.name, e.attributes[0].value.string_value) for e in noted_span.span.events] == [
        ("cri_proxy.note", "translated v1 -> v1alpha2"),
        ("translation.warning", "v1-only fields ignored by the v1alpha2 runtime: x.y")]


def test_http_protocol_and_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with http_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "cri-proxy-node-7")
        spans = CallSpans(fast())
        spans.observe(traced(make_call("Version"), 77))
        spans.close()
        [item] = receiver.wait_for(1)
    assert item.span.trace_id == (77).to_bytes(16, "big")
    assert item.resource["service.name"] == "cri-proxy-node-7"


def test_the_sample_ratio_makes_root_spans() -> None:
    with grpc_receiver("127.0.0.1:0") as receiver:
        spans = CallSpans(fast(receiver.endpoint, ratio=1.0))
        for i in range(5):
            spans.observe(make_call("ListPodSandbox", stream_id=2 * i + 1))
        spans.observe(traced(make_call("Version"), 5, flags="00"))  # the caller said no: still no span
        spans.close()
        items = receiver.wait_for(5)
        assert len(receiver.items) == 5
    assert all(item.span.parent_span_id == b"" for item in items)
    assert len({item.span.trace_id for item in items}) == 5


def test_a_collector_that_is_down_costs_bounded_time_and_the_loss_is_counted(sock_dir: pathlib.Path) -> None:
    options = SpanOptions(endpoint=f"unix://{sock_dir}/nobody.sock", max_queue_size=64, max_export_batch_size=16,
                          schedule_delay_s=0.05, export_timeout_s=0.5)
    spans = CallSpans(options)
    calls = [traced(make_call("Version", stream_id=2 * i + 1), i + 1) for i in range(3000)]
    t0 = time.perf_counter()
    for call in calls:
        spans.observe(call)
    feeding = time.perf_counter() - t0
    assert feeding < 3.0, f"feeding 3000 calls took {feeding:.2f}s with the collector down"
    t0 = time.perf_counter()
    spans.close(timeout_s=2.0)
    assert time.perf_counter() - t0 < 10.0
    counts = spans.counts()
    assert counts.exported == 0
    assert counts.dropped == len(calls)
    assert counts.queue_full > 0  # the bound held: what did not fit was dropped at once, not queued
    assert counts.made + counts.queue_full == len(calls)


def test_bad_options_are_refused() -> None:
    for options, match in ((SpanOptions(trace_sample_ratio=1.5), "ratio"),
                           (SpanOptions(protocol="thrift"), "protocol"),
                           (SpanOptions(max_queue_size=10, max_export_batch_size=20), "batch size")):
        with pytest.raises(ConfigError, match=match):
            options.check()


def test_the_collector_example_is_whole_and_matches_the_defaults() -> None:
    config: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics"}
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], f"pipeline {name}: {kind[:-1]} {component} is not defined"
    # The spans peer's default (the OTLP exporter's) is gRPC to localhost:4317.
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:4317"
    [job] = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [DEFAULT_LISTEN]
    assert "batch" in pipelines["traces"]["processors"]
