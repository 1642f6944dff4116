"""cri_proxy/recorder/span_failures.py: with the collector down, the exporter's failures are
one log line, then one per interval with how many were held back, and every failed batch is
counted (cri_proxy_span_export_failures_total)."""

from __future__ import annotations

import logging
import pathlib

import pytest

from cri_proxy.recorder.metrics import CallMetrics
from cri_proxy.recorder.span_failures import EXPORTER_LOGGERS, ExportFailureLog
from cri_proxy.recorder.spans import CallSpans, SpanOptions
from tests.helpers.calls import make_call, wait_for
from tests.helpers.scrape import get, samples, total

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(EXPORTER_LOGGERS[0], level, __file__, 1, message, None, None)


def test_the_first_failure_then_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    failures = ExportFailureLog(interval_s=300, clock=clock)
    shown = [failures.filter(record(f"failed {i}")) for i in range(10)]
    assert shown == [True] + [False] * 9 and failures.held == 9
    assert failures.filter(record("retrying", logging.INFO))  # below a warning: not held back
    clock.now += 300
    later = record("failed again")
    assert failures.filter(later)
    assert later.getMessage() == "failed again (and 9 more span export failures held back in the last 300s)"
    assert not failures.filter(record("and again"))
    with caplog.at_level(logging.WARNING):
        failures.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "spans: 1 more span export failures held back since the last one logged"]
    assert failures.held == 0


def test_a_collector_down_for_many_batches_is_one_line_and_counted(sock_dir: pathlib.Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    options = SpanOptions(endpoint=f"unix://{sock_dir}/nobody.sock", trace_sample_ratio=1.0, max_export_batch_size=2,
                          schedule_delay_s=0.01, export_timeout_s=0.2)
    metrics = CallMetrics(process=False)
    with caplog.at_level(logging.INFO):
        spans = CallSpans(options)
        metrics.read_spans(spans.counts)
        server = metrics.serve(f"unix://{sock_dir}/m.sock", poll_interval_s=0.01)  # close() at once
        try:
            for i in range(40):
                spans.observe(make_call("Version", stream_id=2 * i + 1))
            wait_for(lambda: spans.counts().failed_batches >= 3, timeout=30)
            found = samples(get(f"unix://{sock_dir}/m.sock", "/metrics")[1])
        finally:
            server.close()
            spans.close(timeout_s=1.0)
    assert total(found, "cri_proxy_span_export_failures_total") >= 3
    exporter_lines = [r for r in caplog.records if r.name in EXPORTER_LOGGERS and r.levelno >= logging.WARNING]
    # At most the first failure's line: whether the SDK logs one at all for this batch size
    # depends on its exporter's state left by earlier exporters in the process (seen: none,
    # after another test's exporter to a dead collector); the filter's own rule is tested above.
    assert len(exporter_lines) <= 1, [r.getMessage() for r in exporter_lines]
    held = [r.getMessage() for r in caplog.records if "held back since the last one logged" in r.getMessage()]
    assert len(held) <= 1  # the rest, if the exporter logged more, in one line at close
