"""cri_proxy/recorder/queue.py: the recorder's queue is bounded by count and bytes; what does not
fit is counted lost, once per episode."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.queue import BATCH_BYTES, CallQueue
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import make_call, rows, version_call, wait_for

pytestmark = pytest.mark.timeout(60)


def test_queue_overflow_is_counted_once_per_episode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(max_queue_calls=10, flush_interval_s=0.05))
    caplog.set_level(logging.WARNING, "cri_proxy.recorder.recorder")
    for i in range(25):  # not started yet: nothing drains the queue
        recorder.submit(version_call(i))
    assert (recorder.stats.queued, recorder.stats.lost, recorder.stats.loss_episodes) == (10, 15, 1)
    assert sum("queue full" in r.getMessage() for r in caplog.records) == 1
    recorder.start()
    wait_for(lambda: recorder.stats.queued == 0)
    for i in range(25, 30):
        recorder.submit(version_call(i))
    wait_for(lambda: recorder.stats.recorded == 15)
    recorder.close()
    assert sum("drained" in r.getMessage() for r in caplog.records) == 1
    assert rows(path, "SELECT calls_recorded, calls_lost, loss_episodes FROM sessions") == [(15, 15, 1)]
    assert rows(path, "SELECT reason, calls_lost FROM losses") == [("queue full", 15)]


def test_queue_is_bounded_by_bytes(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "calls.db", options=RecorderOptions(max_queue_bytes=100_000))
    big = make_call("Version", {"version": "x" * 30_000}, {})
    for _ in range(5):
        recorder.submit(big)
    assert (recorder.stats.queued, recorder.stats.lost) == (3, 2)
    assert recorder.stats.queued_bytes <= 100_000


def test_a_batch_is_due_by_bytes_too() -> None:
    """Large replies: a batch is due (and taken) at BATCH_BYTES, long before the queue's byte
    bound, so the writer is woken before calls are lost to a full queue."""
    queue = CallQueue(RecorderOptions(batch_max_calls=500, max_queue_bytes=64 << 20))
    big = PreparedCall(make_call("Version"), 1 << 20)
    woken = [queue.put(big) for _ in range(6)]
    assert woken == [False, False, False, True, True, True]
    batch, prepared = queue.take([])
    assert len(batch) == BATCH_BYTES >> 20 and not prepared and queue.bytes == 2 << 20
