"""cri_proxy/cli/export.py: `cri-proxy export` sends a recording's calls to a real OTLP
receiver as the spans the live recorder makes of them, selected by session and time, with
a progress line and a count; a collector that is not there is one error line."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.recorder.spans import CallSpans, SpanOptions
from tests.helpers.calls import make_call, read_rows, record
from tests.helpers.cli import cli_env, one_error_line, run_cli
from tests.helpers.otlp import Received, grpc_receiver, http_receiver
from tests.helpers.recordings import GOLDEN_DIR

pytestmark = pytest.mark.timeout(90)


def traced(call: RecordedCall, n: int, flags: str = "01") -> RecordedCall:
    call.request_metadata.append(("traceparent", f"00-{n:032x}-{n + 0xABC:016x}-{flags}"))
    return call


def calls_of_two_runs(path: Path, now: float) -> tuple[list[RecordedCall], list[RecordedCall]]:
    first = [traced(make_call("Version", {}, {"version": "0.1.0"}, started=now - 7200), 1),
             make_call("RunPodSandbox", {"config": {"metadata": {"name": "web-0", "namespace": "shop", "uid": "u"}}},
                       {"pod_sandbox_id": "p" * 64}, started=now - 7100),
             traced(make_call("ListImages", started=now - 7000), 9, flags="00")]  # not sampled: no span
    second = [make_call("ContainerStatus", status=5, message="gone", started=now - 60 + i, stream_id=2 * i + 1)
              for i in range(3)]
    record(path, first)
    record(path, second)
    return first, second


def shape(item: Received) -> tuple[object, ...]:
    span = item.span
    return (span.name, span.kind, span.parent_span_id, span.start_time_unix_nano, span.end_time_unix_nano,
            span.status.code, span.status.message, sorted(item.attributes.items()))


def test_every_call_becomes_the_span_the_live_recorder_makes(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    first, second = calls_of_two_runs(path, time.time())
    with grpc_receiver("127.0.0.1:0") as receiver:
        result = run_cli("export", str(path), "--otlp-endpoint", receiver.endpoint)
        assert result.returncode == 0, result.stderr
        exported = receiver.wait_for(5)
        assert len(exported) == 5
    assert result.stdout == (f"exported 5 spans of 6 calls to {receiver.endpoint} "
                             "(1 not sampled by their traceparent)\n")
    assert result.stderr.splitlines()[-1] == "export: 6/6 calls, 5 spans sent"
    assert {item.resource["host.name"] for item in exported} == {socket.gethostname()}  # the session's host
    with grpc_receiver("127.0.0.1:0") as live_receiver:  # the same calls through the live peer
        live = CallSpans(SpanOptions(endpoint=live_receiver.endpoint, trace_sample_ratio=1.0, schedule_delay_s=0.05))
        for call in first + second:
            facts = {"k8s.pod.name": "web-0", "k8s.namespace.name": "shop",
                     "cri.pod_sandbox_id": "p" * 64} if call.method == "RunPodSandbox" else None
            live.observe(call, facts)
        live.close()
        made_live = live_receiver.wait_for(5)
    by_name = {item.span.name: shape(item) for item in made_live}
    assert {item.span.name: shape(item) for item in exported} == by_name  # roots' ids differ: not compared
    traced_one = next(i for i in exported if i.span.name.endswith("/Version"))
    assert traced_one.span.trace_id == (1).to_bytes(16, "big")
    assert traced_one.span.parent_span_id == (1 + 0xABC).to_bytes(8, "big")


def test_session_since_and_until_select_the_calls(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    now = time.time()
    calls_of_two_runs(path, now)
    with http_receiver() as receiver:
        one = run_cli("export", "--db", str(path), "--otlp-endpoint", receiver.endpoint, "--otlp-protocol",
                      "http/protobuf", "--session", "2")
        assert one.returncode == 0, one.stderr
        assert [i.span.name for i in receiver.wait_for(3)] == ["runtime.v1.RuntimeService/ContainerStatus"] * 3
        early = run_cli("export", str(path), "--otlp-endpoint", receiver.endpoint, "--otlp-protocol",
                        "http/protobuf", "--until", "1h")
        assert early.returncode == 0, early.stderr
        assert [i.span.name for i in receiver.wait_for(5)[3:]] == [
            "runtime.v1.RuntimeService/Version", "runtime.v1.RuntimeService/RunPodSandbox"]
        recent = run_cli("export", str(path), "--otlp-endpoint", receiver.endpoint, "--otlp-protocol",
                         "http/protobuf", "--since", "30m")
        assert recent.stdout.startswith("exported 3 spans of 3 calls")
    assert "no session 7" in one_error_line(run_cli("export", str(path), "--otlp-endpoint", receiver.endpoint,
                                                    "--session", "7")).lower()


def test_a_golden_recording_exports_whole() -> None:
    golden = GOLDEN_DIR / "schema-v1.db"  # the oldest format: read through compat, never written
    (count,) = read_rows(golden, "SELECT COUNT(*) FROM calls")[0]
    (host,) = read_rows(golden, "SELECT hostname FROM sessions ORDER BY id LIMIT 1")[0]
    with grpc_receiver("127.0.0.1:0") as receiver:
        result = run_cli("export", str(golden), "--otlp-endpoint", receiver.endpoint)
        assert result.returncode == 0, result.stderr
        items = receiver.wait_for(count)
    assert result.stdout.startswith(f"exported {count} spans of {count} calls")
    assert {i.resource["host.name"] for i in items} == {host}


def test_a_collector_that_is_not_there_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    calls_of_two_runs(path, time.time())
    # The exporter's own timeout (the OTel variable export reads; its default is 10 s of
    # retries) set short: nobody will ever answer on this socket, waiting longer shows nothing.
    result = run_cli("export", str(path), "--otlp-endpoint", f"unix://{tmp_path}/nobody.sock", "--log-level", "error",
                     env=cli_env(OTEL_EXPORTER_OTLP_TIMEOUT="1"))
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("cri-proxy: error:")]
    assert result.returncode == 2 and line == [
        f"cri-proxy: error: the collector at unix://{tmp_path}/nobody.sock took none of the first 5 spans "
        "(is it running? see the log above)"]
