"""The real `python -m cri_proxy` entry point as a process of its own: the few things an
in-process run cannot show (start-up, exit statuses as the shell sees them). The commands'
behaviour is tested in-process (tests/helpers/cli.py run_cli); signals are sent to real
processes in tests/query/test_tail.py (`Tail`) and tests/proxy/test_daemon.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy import __version__
from tests.helpers.cli import one_error_line, run_cli_process

pytestmark = pytest.mark.timeout(60)


def test_version_and_usage_through_the_entry_point() -> None:
    result = run_cli_process("version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cri-proxy {__version__}\n", "")
    usage = run_cli_process("query", "--bogus")
    assert usage.returncode == 2 and "No such option: --bogus" in usage.stderr and usage.stdout == ""
    assert "Usage: cri-proxy query" in usage.stderr  # the program's name, not __main__.py


def test_bad_input_is_exit_2_and_one_line(tmp_path: Path) -> None:
    line = one_error_line(run_cli_process("stats", "--db", str(tmp_path / "absent.db")))
    assert line.startswith(f"cri-proxy: error: no recording database at {tmp_path / 'absent.db'}")
