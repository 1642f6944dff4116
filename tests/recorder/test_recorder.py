"""cri_proxy/recorder/recorder.py: admission (keep) before the queue, a submit that never raises,
and a close that writes what is queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import make_call, rows, version_call

pytestmark = pytest.mark.timeout(60)


def test_keep_policy_skips_calls_before_the_queue(tmp_path: Path) -> None:
    from cri_proxy.recorder.keep import KeepPolicy

    policy = KeepPolicy.from_options(include=[], exclude=["List*"], sample=[])
    path = tmp_path / "calls.db"
    recorder = Recorder(path, keep=policy.keep)
    recorder.start()
    recorder.submit(make_call("ListContainers", {}, {}))
    recorder.submit(version_call(1))
    recorder.close()
    assert (recorder.stats.recorded, recorder.stats.skipped, recorder.stats.lost) == (1, 1, 0)
    assert rows(path, "SELECT method FROM calls") == [("Version",)]


def test_submit_never_raises(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "calls.db")
    broken = version_call(1)
    broken.messages = None  # type: ignore[assignment]
    recorder.submit(broken)
    assert recorder.stats.lost == 1


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, options=RecorderOptions(flush_interval_s=60, batch_max_calls=100))
    recorder.start()
    for i in range(250):
        recorder.submit(version_call(i))
    recorder.close()
    assert rows(path, "SELECT count(*) FROM calls") == [(250,)]
    assert rows(path, "SELECT calls_recorded, calls_lost, ended_at IS NOT NULL FROM sessions") == [(250, 0, 1)]


def test_backlog_is_what_stats_says_of_the_queue(tmp_path: Path) -> None:
    """Recorder.backlog, which the worker's loop reads between blocks, against the full
    snapshot: the bytes queued for the writer (none once written) and its health."""
    recorder = Recorder(tmp_path / "calls.db", options=RecorderOptions(flush_interval_s=60))
    assert recorder.backlog() == (0, True)
    for i in range(5):
        recorder.submit(version_call(i))
    stats = recorder.stats
    assert recorder.backlog() == (stats.queued_bytes, stats.healthy) and stats.queued_bytes > 0
    recorder.start()
    recorder.close()
    assert recorder.backlog() == (0, True) and recorder.stats.recorded == 5
