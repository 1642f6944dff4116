"""Catching up (recorder.catchup): skims close together are one loss episode."""

from __future__ import annotations

import pathlib
import socket
import time

import pytest

from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.behind import MERGE_S
from cri_proxy.recorder.loop import Worker
from cri_proxy.recorder.setup import make_recorder
from tests.helpers.calls import make_call, rows

pytestmark = pytest.mark.timeout(30)


def _skimming_worker(path: pathlib.Path) -> tuple[Worker, socket.socket, socket.socket]:
    ours, theirs = socket.socketpair()
    recorder = make_recorder(RecordConfig(db=path), SessionInfo(), thread=False)
    return Worker(theirs, recorder), ours, theirs


def test_skims_close_together_are_one_loss_episode(tmp_path: pathlib.Path) -> None:
    """A flood that comes and goes: the recorder records again as soon as it has caught up,
    and the skims that follow within a second count as the same episode."""
    path = tmp_path / "calls.db"
    worker, ours, theirs = _skimming_worker(path)
    skimmed = make_call("Version", {}, {})
    worker.skim(True, 3.0)
    for _ in range(3):
        worker._skimmed(skimmed)
    worker.skim(False, 0.0)
    assert not worker.tap.skimming  # caught up: calls are recorded again at once
    worker.skim(True, 3.0)  # behind again straight away: the same flood
    for _ in range(2):
        worker._skimmed(skimmed)
    worker.skim(False, 0.0)
    worker.end_episode(time.time())  # under a second after it ended: it may still go on
    worker.end_episode(time.time() + MERGE_S + 0.1)
    worker.skim(True, 3.0)  # a later flood: an episode of its own
    worker._skimmed(skimmed)
    worker.finish()
    ours.close()
    theirs.close()
    assert rows(path, "SELECT reason, calls_lost FROM losses ORDER BY id") == \
        [("recorder fell behind", 5), ("recorder fell behind", 1)]
    assert rows(path, "SELECT calls_lost, loss_episodes FROM sessions") == [(6, 2)]
