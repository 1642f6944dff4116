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
