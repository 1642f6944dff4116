"""The metrics peer (cri_proxy/recorder/metrics.py, metrics_http.py), scraped over real sockets."""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest
import yaml
from hpack import Encoder
from hyperframe.frame import HeadersFrame

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.errors import ConfigError
from cri_proxy.recorder.metrics import MAX_CLIENTS, MAX_RULES, CallMetrics
from cri_proxy.proxy.tap import ConnectionInfo
from cri_proxy.recorder.metrics_http import MetricsServer, parse_listen
from cri_proxy.recorder.spans import CallSpans, SpanOptions
from cri_proxy.recorder.tap import RecordingTap
from cri_proxy.recorder.telemetry import open_calls
from tests.conftest import ROOT
from tests.helpers import scrape
from tests.helpers.calls import make_call
from tests.helpers.rawh2 import request_headers
from tests.helpers.scrape import samples

PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is absent (Debian's `prometheus` package has it; .ci/run installs it)"
V1 = "runtime.v1.RuntimeService"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(server: MetricsServer, path: str) -> tuple[int, str]:
    """One real HTTP GET to the server, over TCP or its unix socket."""
    return scrape.get(f"unix://{server.unix_path}" if server.unix_path is not None else server.address, path)


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


CLOSE_POLL_S = 0.01  # the serving thread looks for close() this often (by default 0.5 s, waited per server)


@pytest.fixture
def metrics() -> CallMetrics:
    return CallMetrics()


@pytest.fixture
def server(metrics: CallMetrics) -> MetricsServer:
    srv = metrics.serve("127.0.0.1:0", poll_interval_s=CLOSE_POLL_S)
    yield srv  # type: ignore[misc]
    srv.close()


def known_sequence() -> list[RecordedCall]:
    """7 Version OK, 3 ListContainers NOT_FOUND, 2 StopContainer cancelled, 1 with no status."""
    calls = [make_call("Version", {}, {"version": "0.1.0"}, stream_id=2 * i + 1) for i in range(7)]
    calls += [make_call("ListContainers", status=5, message="gone", duration_ms=30) for _ in range(3)]
    calls += [make_call("StopContainer", status=None, outcome=Outcome.CANCELLED, duration_ms=2000)
              for _ in range(2)]
    calls.append(make_call("PodSandboxStatus", status=None))
    return calls


def test_counters_equal_what_was_fed(metrics: CallMetrics, server: MetricsServer) -> None:
    calls = known_sequence()
    for call in calls:
        metrics.observe(call)
    status, body = get(server, "/metrics")
    assert status == 200
    found = samples(body)
    total = "cri_proxy_calls_total"
    assert value(found, total, service=V1, method="Version", code="OK") == 7
    assert value(found, total, service=V1, method="ListContainers", code="NOT_FOUND") == 3
    assert value(found, total, service=V1, method="StopContainer", code="cancelled") == 2
    assert value(found, total, service=V1, method="PodSandboxStatus", code="no_status") == 1
    failed = "cri_proxy_calls_failed_total"
    assert value(found, failed, service=V1, method="Version") == 0
    assert value(found, failed, service=V1, method="ListContainers") == 3
    assert value(found, failed, service=V1, method="StopContainer") == 2
    assert value(found, failed, service=V1, method="PodSandboxStatus") == 1
    hist = "cri_proxy_call_duration_seconds"
    assert value(found, hist + "_count", service=V1, method="StopContainer") == 2
    assert value(found, hist + "_bucket", service=V1, method="ListContainers", le="0.025") == 0
    assert value(found, hist + "_bucket", service=V1, method="ListContainers", le="0.05") == 3
    assert value(found, hist + "_sum", service=V1, method="StopContainer") == pytest.approx(4.0)
    request = sum(c.request_bytes for c in calls if c.method == "Version")
    response = sum(c.response_bytes for c in calls if c.method == "Version")
    assert response > 0
    assert value(found, "cri_proxy_request_bytes_total", service=V1, method="Version") == request
    assert value(found, "cri_proxy_response_bytes_total", service=V1, method="Version") == response
    assert value(found, "process_resident_memory_bytes") > 0


def test_odd_paths_and_codes_keep_the_labels_bounded(metrics: CallMetrics, server: MetricsServer) -> None:
    for i in range(50):
        metrics.observe(RecordedCall(1, 2 * i + 1, time.time(), f"/evil.Service{i}/M{i}", duration_s=0.001,
                                     status_code=12))
    for code in range(100, 130):  # codes gRPC does not define share one label value
        metrics.observe(make_call("Version", status=code))
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_calls_total", service="other", method="other", code="UNIMPLEMENTED") == 50
    assert value(found, "cri_proxy_calls_total", service=V1, method="Version", code="CODE_OTHER") == 30
    assert not [key for key in found if ("method", "M7") in key[1]]


def test_translation_notes_are_counted(metrics: CallMetrics, server: MetricsServer) -> None:
    warned = make_call("CreateContainer", version="v1")
    warned.notes = ["translated v1 -> v1alpha2", "v1-only fields ignored by the v1alpha2 runtime: x"]
    refused = make_call("CreateContainer", status=3)
    refused.notes = ["refused: env values not valid UTF-8: A"]
    for call in (warned, refused, make_call("CreateContainer")):
        metrics.observe(call)
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_translation_warnings_total", service=V1, method="CreateContainer") == 1
    assert value(found, "cri_proxy_translation_refusals_total", service=V1, method="CreateContainer") == 1


def fault_calls() -> list[RecordedCall]:
    """The notes the relay writes on the calls its fault rules changed (and one it did not)."""
    notes = [["fault: pull-fails error UNAVAILABLE"], ["fault: pull-fails error UNAVAILABLE"],
             ["fault: slow status delay 2.000s"], ["fault: stuck hang"], ["fault: stuck hang 1.000s"],
             ["translated v1 -> v1alpha2", "fault: drop close"], ["fault: nonsense"], []]
    calls = []
    for i, texts in enumerate(notes):
        call = make_call("PullImage", stream_id=2 * i + 1)
        call.notes = texts
        calls.append(call)
    return calls


def test_injected_faults_are_counted_by_rule_and_action(metrics: CallMetrics, server: MetricsServer) -> None:
    for call in fault_calls():
        metrics.observe(call)
    found = samples(get(server, "/metrics")[1])
    injected = {(dict(labels)["rule"], dict(labels)["action"]): v for (name, labels), v in found.items()
                if name == "cri_proxy_faults_injected_total"}
    assert injected == {("pull-fails", "error"): 2, ("slow status", "delay"): 1, ("stuck", "hang"): 2,
                        ("drop", "close"): 1}


def test_fault_rule_names_are_capped(metrics: CallMetrics, server: MetricsServer) -> None:
    for i in range(MAX_RULES + 7):
        call = make_call("Version", stream_id=2 * i + 1)
        call.notes = [f"fault: rule-{i} close"]
        metrics.observe(call)
    found = samples(get(server, "/metrics")[1])
    rules = {dict(labels)["rule"]: v for (name, labels), v in found.items() if name == "cri_proxy_faults_injected_total"}
    assert len(rules) == MAX_RULES + 1 and rules["other"] == 7 and rules["rule-0"] == 1


class Observed:
    """The tap's sink: each finished call to the metrics peer, as telemetry.ObservingSink does."""

    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics

    def submit(self, call: RecordedCall) -> None:
        self.metrics.observe(call)


def request(encoder: Encoder, stream_id: int, method: str) -> bytes:
    """A client's request headers for `method`, as the relay hands them to the tap."""
    block = encoder.encode(request_headers(f"/{V1}/{method}"))
    return HeadersFrame(stream_id, block, flags=["END_HEADERS"]).serialize()


def test_an_open_call_shows_in_the_next_scrape(metrics: CallMetrics, server: MetricsServer) -> None:
    started = [time.time()]
    tap = RecordingTap(Observed(metrics), clock=lambda: started[0])
    conns = {conn_id: tap.open(ConnectionInfo(conn_id, 42, 0, "unix:///rt.sock")) for conn_id in (1, 2)}
    metrics.watch_open(lambda: open_calls(conns))
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_oldest_open_call_age_seconds") == 0
    client, runtime = Encoder(), Encoder()
    started[0] = time.time() - 90  # held open by the runtime for a minute and a half
    conns[1].client_bytes(request(client, 5, "StopContainer"))
    started[0] = time.time() - 3600  # streaming: open by design
    conns[1].client_bytes(request(client, 7, "GetContainerEvents"))
    started[0] = time.time()
    conns[2].client_bytes(request(Encoder(), 1, "ListContainers"))
    found = samples(get(server, "/metrics")[1])
    assert 90 <= value(found, "cri_proxy_oldest_open_call_age_seconds") < 120
    assert value(found, "cri_proxy_calls_in_flight", service=V1, method="StopContainer") == 1
    assert value(found, "cri_proxy_calls_in_flight", service=V1, method="GetContainerEvents") == 1
    conns[1].server_bytes(HeadersFrame(5, runtime.encode([(":status", "200")]), flags=["END_HEADERS"]).serialize()
                          + HeadersFrame(5, runtime.encode([("grpc-status", "0")]),
                                         flags=["END_HEADERS", "END_STREAM"]).serialize())
    conns.pop(2).closed(None)  # as the worker does when the relay says CLOSED
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_calls_in_flight", service=V1, method="StopContainer") == 0
    assert value(found, "cri_proxy_calls_in_flight", service=V1, method="ListContainers") == 0
    assert value(found, "cri_proxy_oldest_open_call_age_seconds") == 0  # only the stream is left
    assert value(found, "cri_proxy_calls_total", service=V1, method="StopContainer", code="OK") == 1


def test_facts_that_are_not_calls(metrics: CallMetrics, server: MetricsServer) -> None:
    endpoint = "unix:///run/containerd/containerd.sock"
    metrics.upstream_changed(endpoint, True, "v1alpha2")
    metrics.upstream_changed(endpoint, False)
    metrics.lost("queue_full", 4)
    metrics.lost("queue_full", 1)
    metrics.lost("writer_failed", 2)
    metrics.lag(1.5)
    metrics.db_size(4096)
    for i in range(MAX_CLIENTS + 5):
        metrics.connection_opened(f"client{i}")
    metrics.connection_opened("client0")
    metrics.connection_closed("client1")
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_upstream_up", endpoint=endpoint) == 0
    assert value(found, "cri_proxy_upstream_api_info", endpoint=endpoint, api="v1alpha2") == 1
    assert value(found, "cri_proxy_recorder_calls_lost_total", reason="queue_full") == 5
    assert value(found, "cri_proxy_recorder_calls_lost_total", reason="writer_failed") == 2
    assert value(found, "cri_proxy_recorder_lag_seconds") == 1.5
    assert value(found, "cri_proxy_database_bytes") == 4096
    clients = {dict(labels)["client"]: v for name, labels in found if name == "cri_proxy_connections_open"
               for v in [found[(name, labels)]]}
    assert len(clients) == MAX_CLIENTS + 1
    assert clients["client0"] == 2 and clients["client1"] == 0 and clients["other"] == 5


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_exposition(metrics: CallMetrics, server: MetricsServer) -> None:
    for call in known_sequence():
        metrics.observe(call)
    metrics.watch_open(lambda: [(f"/{V1}/Version", time.time())])
    metrics.upstream_changed("unix:///run/containerd/containerd.sock", True, "v1")
    metrics.lost("queue_full", 1)
    metrics.connection_opened("kubelet")
    for call in fault_calls():
        metrics.observe(call)
    body = get(server, "/metrics")[1]
    assert "cri_proxy_faults_injected_total{" in body
    done = subprocess.run([str(PROMTOOL), "check", "metrics"], input=body, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unix_socket_listener_and_the_probes(sock_dir: pathlib.Path) -> None:
    metrics = CallMetrics()
    reasons: list[str | None] = ["the database is not open yet"]
    server = metrics.serve(f"unix://{sock_dir}/metrics.sock", ready=lambda: reasons[-1],
                           poll_interval_s=CLOSE_POLL_S)
    try:
        metrics.observe(make_call("Version"))
        status, body = get(server, "/metrics")
        assert status == 200
        assert value(samples(body), "cri_proxy_calls_total", service=V1, method="Version", code="OK") == 1
        assert get(server, "/healthz") == (200, "ok\n")
        assert get(server, "/readyz") == (503, "the database is not open yet\n")
        reasons.append(None)
        assert get(server, "/readyz") == (200, "ready\n")
        assert get(server, "/nothing")[0] == 404
    finally:
        server.close()
    assert not (sock_dir / "metrics.sock").exists()


def test_a_readiness_check_that_raises_means_not_ready() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    srv = CallMetrics().serve("127.0.0.1:0", ready=broken, poll_interval_s=CLOSE_POLL_S)
    try:
        assert get(srv, "/readyz") == (503, "readiness check failed: boom\n")
    finally:
        srv.close()


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    assert parse_listen("unix:///run/cri-proxy/metrics.sock") == "/run/cri-proxy/metrics.sock"
    for bad in ("9464x", "localhost", "unix://relative.sock", "host:99999"):
        with pytest.raises(ConfigError, match="metrics listen"):
            parse_listen(bad)


@pytest.mark.skipif(not socket.has_ipv6, reason="this Python has no IPv6 support")
def test_an_ipv6_listener() -> None:
    server = CallMetrics(process=False).serve("[::1]:0", poll_interval_s=CLOSE_POLL_S)
    try:
        assert server.address.startswith("[::1]:")
        assert get(server, "/healthz") == (200, "ok\n")
    finally:
        server.close()


def test_two_peers_do_not_share_series() -> None:
    one, two = CallMetrics(process=False), CallMetrics(process=False)
    one.observe(make_call("Version"))
    labels = {"service": V1, "method": "Version", "code": "OK"}
    assert one.registry.get_sample_value("cri_proxy_calls_total", labels) == 1
    assert two.registry.get_sample_value("cri_proxy_calls_total", labels) is None


def test_the_spans_peer_counts_are_exposed(metrics: CallMetrics, server: MetricsServer,
                                           sock_dir: pathlib.Path) -> None:
    spans = CallSpans(SpanOptions(endpoint=f"unix://{sock_dir}/nobody.sock", max_queue_size=4,
                                  max_export_batch_size=4, export_timeout_s=0.2))
    metrics.read_spans(spans.counts)
    for i in range(10):
        call = make_call("Version", stream_id=2 * i + 1)
        call.request_metadata.append(("traceparent", f"00-{i + 1:032x}-{i + 1:016x}-01"))
        spans.observe(call)
    spans.close(timeout_s=2.0)
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_spans_exported_total") == 0
    assert value(found, "cri_proxy_spans_dropped_total") == 10


def test_every_metric_is_documented(metrics: CallMetrics) -> None:
    for call in known_sequence():
        metrics.observe(call)
    spans = CallSpans(SpanOptions(endpoint="unix:///nonexistent.sock"))
    metrics.read_spans(spans.counts)
    spans.close()
    doc = (ROOT / "examples" / "metrics.md").read_text()
    suffix = {"counter": "_total", "info": "_info"}  # as the exposition spells the family
    names = {family.name + suffix.get(family.type, "") for family in metrics.registry.collect()}
    assert "cri_proxy_calls_in_flight" in names and "cri_proxy_spans_dropped_total" in names
    missing = sorted(name for name in names if f"`{name}`" not in doc and not name.startswith("process_"))
    assert not missing, f"not in examples/metrics.md: {missing}"


# --- examples/alerts.yaml ---------------------------------------------------------------

ALERTS = ROOT / "examples" / "alerts.yaml"


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_alert_rules() -> None:
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(ALERTS)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _rule_test(series: str, values: str, alert: str, at: str, labels: dict[str, str] | None = None,
               **annotations: str) -> dict[str, Any]:
    """One promtool case: the alert fires at `at` with these labels and annotations, or (no labels) not."""
    fired = [] if labels is None else [{"exp_labels": labels, "exp_annotations": annotations}]
    return {"interval": "15s", "input_series": [{"series": series, "values": values}],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": fired}]}


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_each_alert_fires_when_it_should(tmp_path: pathlib.Path) -> None:
    node = 'instance="node-1", job="cri-proxy"'
    endpoint = "unix:///run/containerd/containerd.sock"
    up = f'cri_proxy_upstream_up{{{node}, endpoint="{endpoint}"}}'
    age = f"cri_proxy_oldest_open_call_age_seconds{{{node}}}"
    lost = f'cri_proxy_recorder_calls_lost_total{{{node}, reason="queue_full"}}'
    who = {"instance": "node-1", "job": "cri-proxy"}
    tests = [
        # Up, then down from 1m: not yet at 1m30 (for: 1m), firing at 2m30.
        _rule_test(up, "1x3 0x12", "CriProxyRuntimeUnreachable", "1m30s"),
        _rule_test(up, "1x3 0x12", "CriProxyRuntimeUnreachable", "2m30s",
                   {"severity": "critical", "endpoint": endpoint, **who},
                   summary=f"Container runtime {endpoint} unreachable on node-1",
                   description=f"cri-proxy has not reached {endpoint} for over a minute."),
        # A call opened at 0 and still open: 45 s old at 45 s (quiet), 75 s at 75 s (firing).
        _rule_test(age, "0+15x8", "CriProxyCallHung", "45s"),
        _rule_test(age, "0+15x8", "CriProxyCallHung", "75s", {"severity": "warning", **who},
                   summary="A CRI call has been open 1m 15s on node-1",
                   description="See cri_proxy_calls_in_flight for the method; `cri-proxy tail` shows it when "
                   "it ends."),
        # 3 calls lost every scrape: firing once that lasted 5 minutes; never, when none are lost.
        _rule_test(lost, "0+3x60", "CriProxyRecorderLosingCalls", "10m", {"severity": "warning", **who},
                   summary="cri-proxy on node-1 lost 120 calls in 10 minutes",
                   description="cri_proxy_recorder_calls_lost_total by reason says why; check "
                   "cri_proxy_recorder_lag_seconds."),
        _rule_test(lost, "7x60", "CriProxyRecorderLosingCalls", "10m"),
    ]
    spec = tmp_path / "alerts_test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "15s",
                                    "tests": tests}))
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(spec)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_calls_are_counted_by_client_within_the_same_bounded_names(metrics: CallMetrics, server: MetricsServer) -> None:
    import dataclasses

    for i in range(MAX_CLIENTS):
        metrics.connection_opened(f"client{i}")  # the cap is shared with the connections gauge
    calls = [dataclasses.replace(make_call("Version", {}, {}), peer_name=name)
             for name in ("client0", "client0", "newcomer", None)]
    for call in calls:
        metrics.observe(call)
    found = samples(get(server, "/metrics")[1])
    assert value(found, "cri_proxy_client_calls_total", client="client0") == 2
    assert value(found, "cri_proxy_client_calls_total", client="other") == 2  # "newcomer" and the nameless call
    assert ("cri_proxy_client_calls_total", frozenset({("client", "newcomer")})) not in found
