"""cri_proxy/proxy/recorder_life.py: a recorder child that keeps dying young is restarted after
a delay that doubles each time, and each new one reports back and carries on the session."""

from __future__ import annotations

import os
import pathlib
import signal

import pytest

from tests.helpers.calls import read_rows as rows
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.proxyproc import ProxyProcess, recorder_pid, wait_for_log

pytestmark = pytest.mark.timeout(90)

BACK = "the recorder process is back"


async def test_a_recorder_that_dies_young_is_restarted_later_each_time(
        sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    path = sock_dir / "calls.db"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(path)) as proxy:
        for restart, delay in enumerate(("0.5", "1.0", "2.0"), 1):
            os.kill(recorder_pid(proxy), signal.SIGKILL)
            await wait_for_log(proxy, f"restarting it in {delay} s")
            await wait_for_log(proxy, BACK, count=restart)
        assert await proxy.astop() == 0
    assert rows(path, "SELECT count(*), sum(calls_lost) FROM losses WHERE reason = 'recorder died'") == [(3, 0)]
    assert rows(path, "SELECT loss_episodes FROM sessions") == [(3,)]
