"""`cri-proxy report` (cli/report.py): the recording as DB or --db, the window flags, and bad
input as one line with exit status 2, the recording untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.browser import page_data
from tests.helpers.calls import T0, lifecycle_calls, record
from tests.helpers.cli import cli_env, one_error_line, run_cli, snapshot

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    record(tmp_path / "calls.db", lifecycle_calls())
    return tmp_path / "calls.db"


def test_report_writes_the_page_and_says_so(recording: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path, skip=("r.html",))
    result = run_cli("report", str(recording), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{tmp_path / 'r.html'}: 13 calls, 0.") and result.stdout.endswith(" s\n")
    assert page_data(tmp_path / "r.html")["window"]["calls"] == 13
    assert snapshot(tmp_path, skip=("r.html",)) == before  # the recording is only read


def test_db_from_the_environment_and_the_window_flags(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "late.html"
    result = run_cli("report", "-o", str(out), "--since", "2027-01-15 08:01:40", "--until", "2027-01-15 08:02:12",
                     "--session", "1", env=cli_env(CRI_PROXY_DB=str(recording)))  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = page_data(out)
    assert data["window"] == {"calls": 3, "first": T0 + 100, "last": T0 + 132}
    assert data["selection"].startswith("session 1, since 2027-01-15 08:01:40")


@pytest.mark.parametrize(("args", "says"), [
    (["-o", "{tmp}/r.txt"], "-o {tmp}/r.txt: name the page .html"),
    (["-o", "{tmp}/absent/r.html"], "cannot write -o {tmp}/absent/r.html: No such file or directory"),
    (["-o", "{tmp}/r.html", "--session", "9"], "no session 9 in the recording (see: cri-proxy stats)"),
    (["-o", "{tmp}/r.html", "--since", "yesterday"], "--since 'yesterday': give a duration (30s, 5m, 2h, 1d) or a UTC time (2026-11-23 23:00:00)"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(recording: Path, tmp_path: Path, args: list[str], says: str) -> None:
    result = run_cli("report", str(recording), *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2
    assert one_error_line(result) == f"cri-proxy: error: {says.format(tmp=tmp_path)}"
    assert not (tmp_path / "r.html").exists()


def test_a_missing_recording(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path / "none.db"), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 2 and "no recording database at" in one_error_line(result)
    assert not (tmp_path / "none.db").exists()


def test_the_recording_given_twice_is_refused(recording: Path, tmp_path: Path) -> None:
    result = run_cli("report", str(recording), "--db", str(tmp_path / "other.db"), "-o", str(tmp_path / "r.html"))
    assert one_error_line(result) == (f"cri-proxy: error: the recording is given twice ({recording} and "
                                      f"--db {tmp_path / 'other.db'}): give it once")  # fmt: skip
    same = run_cli("report", str(recording), "--db", str(recording), "-o", str(tmp_path / "r.html"))
    assert same.returncode == 0, same.stderr
