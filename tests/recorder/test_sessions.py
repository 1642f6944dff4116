"""cri_proxy/recorder/sessions.py: this run's sessions row, written at start, with each batch and at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import rows, version_call, wait_for

pytestmark = pytest.mark.timeout(60)


def test_session_row_start_update_and_end(tmp_path: Path) -> None:
    from cri_proxy.model.session import SessionInfo

    path = tmp_path / "calls.db"
    session = SessionInfo(listen="/run/cri-proxy.sock", runtime_endpoint="unix:///run/containerd/containerd.sock",
                          config={"record": str(path)})  # fmt: skip
    recorder = Recorder(path, session)
    recorder.start()
    recorder.update_session(runtime_api="v1", image_api="v1")
    recorder.submit(version_call(1))
    wait_for(lambda: rows(path, "SELECT runtime_api, calls_recorded FROM sessions") == [("v1", 1)])
    assert rows(path, "SELECT ended_at FROM sessions") == [(None,)]
    recorder.close()
    got = rows(path, "SELECT listen, runtime_endpoint, runtime_api, image_api, calls_recorded, calls_lost, "
                     "ended_at IS NOT NULL, config, cri_proxy_version FROM sessions")  # fmt: skip
    assert got == [("/run/cri-proxy.sock", "unix:///run/containerd/containerd.sock", "v1", "v1", 1, 0, 1,
                    f'{{"record": "{path}"}}', "0.1.0")]  # fmt: skip


KILLED_RUN = """
import os, signal, sqlite3, sys, time
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import version_call
recorder = Recorder(sys.argv[1], SessionInfo(listen="/run/old.sock"))
recorder.start()
recorder.submit(version_call(1))
while sqlite3.connect(sys.argv[1]).execute("SELECT calls_recorded FROM sessions").fetchone() != (1,):
    time.sleep(0.01)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_before_it_ended_is_noted_by_the_next_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    from cri_proxy.model.session import SessionInfo

    path = tmp_path / "calls.db"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(path)], timeout=50)
    assert killed.returncode == -9
    recorder = Recorder(path, SessionInfo(listen="/run/new.sock"))
    recorder.start()
    recorder.close()
    assert rows(path, "SELECT id, listen, ended_at IS NULL, loss_episodes, calls_lost FROM sessions ORDER BY id") == [
        (1, "/run/old.sock", 1, 0, 0), (2, "/run/new.sock", 0, 1, 0)]
    assert rows(path, "SELECT session_id, reason, calls_lost, started_at <= ended_at FROM losses") == [
        (2, "the previous run (session 1) ended unclean: the calls it had not written are missing, uncounted", 0, 1)]


def test_a_run_that_ended_or_still_runs_is_not_taken_for_a_killed_one(tmp_path: Path) -> None:
    from cri_proxy.model.session import SessionInfo

    path = tmp_path / "calls.db"
    first = Recorder(path, SessionInfo(listen="/run/a.sock"))
    first.start()
    first.close()
    running = Recorder(path, SessionInfo(listen="/run/b.sock"))  # this process's pid: alive
    running.start()
    again = Recorder(path, SessionInfo(listen="/run/c.sock"))
    again.start()
    again.close()
    running.close()
    assert rows(path, "SELECT count(*) FROM losses") == [(0,)]
    assert rows(path, "SELECT sum(loss_episodes) FROM sessions") == [(0,)]
