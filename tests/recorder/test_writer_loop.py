"""cri_proxy/recorder/writer_loop.py: the writer side pumped from its owner's loop (no thread),
a full batch written at once, the rest when due or at close."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import rows, version_call

pytestmark = pytest.mark.timeout(60)


def test_pump_writes_full_batches_now_and_says_how_long_the_rest_may_wait(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=60, batch_max_calls=10))
    recorder.start(thread=False)
    for i in range(25):
        recorder.submit(version_call(i))
    waits = [recorder.pump() for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]  # two full batches, written at once
    assert waits[2] is not None and 30 < waits[2] <= 60  # five calls, due at the next flush interval
    assert recorder.stats.recorded == 20 and recorder.stats.queued == 5
    recorder.close()  # written in the caller's thread
    assert recorder.pump() is None
    assert rows(path, "SELECT count(*) FROM calls") == [(25,)]
    assert rows(path, "SELECT calls_recorded, calls_lost FROM sessions") == [(25, 0)]
