"""cri_proxy/cli/misc.py: the smaller commands' command lines. `cri-proxy snapshot`: a live
recording copied through the command line, and its bad input (the window cutting is
cri_proxy.store.snapshot's, tested with it). And `version`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy import __version__
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from tests.helpers.calls import kubelet_second, rows, wait_for
from tests.helpers.cli import one_error_line, run_cli

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("flag, says", [
    ("--since", "--since 'soon': give a duration"),
    ("--until", "--until 'soon': give a duration ago"),
])  # fmt: skip
def test_bad_times_are_one_line_and_nothing_is_written(tmp_path: Path, flag: str, says: str) -> None:
    src = tmp_path / "calls.db"
    src.write_bytes(b"")
    line = one_error_line(run_cli("snapshot", str(src), str(tmp_path / "copy.db"), flag, "soon"))
    assert says in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]


def test_a_copy_of_a_live_recording_holds_every_call_recorded_before_it(tmp_path: Path) -> None:
    """The recorder keeps the file open (its calls sit in the -wal, where `cp` misses them);
    `cri-proxy snapshot` copies them all into a file that reads on its own."""
    src, dest = tmp_path / "calls.db", tmp_path / "copy.db"
    recorder = Recorder(src, options=RecorderOptions(flush_interval_s=0.01))
    recorder.start()
    try:
        calls = kubelet_second(0, pods=3)
        for call in calls:
            recorder.submit(call)
        wait_for(lambda: recorder.stats.recorded == len(calls))
        recorded = len(calls)
        assert (tmp_path / "calls.db-wal").stat().st_size > 0  # still live: the calls are in the WAL
        result = run_cli("snapshot", str(src), str(dest))
        assert result.returncode == 0, result.stderr
        assert f"{recorded} calls of 1 session(s)" in result.stdout
    finally:
        recorder.close()
    assert not (tmp_path / "copy.db-wal").exists() or (tmp_path / "copy.db-wal").stat().st_size == 0
    assert rows(dest, "SELECT count(*) FROM calls") == [(recorded,)]
    assert one_error_line(run_cli("snapshot", str(src), str(dest))).endswith(
        "already exists: give a new file for the snapshot")


def test_version() -> None:
    result = run_cli("version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cri-proxy {__version__}\n", "")
