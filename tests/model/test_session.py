"""cri_proxy/model/session.py: the session, loss episodes and recorder counters as values."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from cri_proxy.model.session import LossEpisode, RecorderStats, SessionInfo


def test_session_defaults_are_made_where_the_run_starts() -> None:
    before = time.time()
    first, second = SessionInfo(), SessionInfo()
    assert first.pid == os.getpid()
    assert before <= first.started_unix <= time.time()
    first.config["x"] = 1
    assert second.config == {}  # each session has its own config dict


def test_episodes_and_stats_are_frozen() -> None:
    episode = LossEpisode(started_unix=1.0, ended_unix=None, reason="queue full", calls_lost=3)
    stats = RecorderStats(recorded=1, lost=0, skipped=0, loss_episodes=0, queued=0, queued_bytes=0, healthy=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        episode.calls_lost = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.lost = 1  # type: ignore[misc]
    assert dataclasses.replace(episode, ended_unix=2.0).ended_unix == 2.0
