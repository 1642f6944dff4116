"""cri_proxy/cli/misc.py: the smaller commands' command lines. `snapshot`'s copy itself is
cri_proxy.store.snapshot's (tested with it); here only what the CLI decides before handing
over: its time flags. And `version`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy import __version__
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


def test_version() -> None:
    result = run_cli("version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"cri-proxy {__version__}\n", "")
