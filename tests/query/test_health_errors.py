"""The failure checks of `cri-proxy health`: an error burst, calls the recorder lost, an
upstream the proxy could not reach."""

from __future__ import annotations

import pathlib
import time

import pytest

from cri_proxy.model.call import Outcome
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import make_call, record, wait_for
from tests.helpers.health import assert_evidence_runs, health, relists

pytestmark = pytest.mark.timeout(60)


def test_lost_calls_and_an_upstream_outage(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    start = time.time() - 300
    down = [make_call("Version", {}, None, status=14, message="connection refused", started=start + i,
                      stream_id=2 * i + 1) for i in range(5)]  # fmt: skip
    down.append(make_call("ListImages", {}, None, status=None, outcome=Outcome.CONNECTION_CLOSED, started=start + 6))
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=3, flush_interval_s=0.05))
    for call in down + relists(start + 100, 10):  # not started yet: the queue overflows
        recorder.submit(call)
    recorder.start()
    wait_for(lambda: recorder.stats.queued == 0)
    recorder.close()
    code, got = health(path, "--since", "1h")
    assert code == 1
    (lost,) = [f for f in got["findings"] if f["kind"] == "losses"]
    assert "calls NOT recorded (queue full)" in lost["summary"]
    assert_evidence_runs(path, got["findings"])


def test_an_unreachable_upstream_is_an_outage(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    start = time.time() - 300
    calls = [make_call("Version", {}, None, status=14, message="connection refused", started=start + i * 10,
                       stream_id=2 * i + 1) for i in range(8)]  # fmt: skip
    record(path, calls)
    _, got = health(path, "--since", "1h")
    (outage,) = [f for f in got["findings"] if f["kind"] == "upstream"]
    assert outage["severity"] == "critical"  # 70 s of it
    assert "8 calls UNAVAILABLE or cut off" in outage["summary"] and "for 1m10s" in outage["summary"]
