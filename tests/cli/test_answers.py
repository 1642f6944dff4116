"""`cri-proxy pod` and `health` as commands: bad input is one error line and exit 2, like the
other read commands; the recording is opened read-only (a stopped one leaves no side files)."""

from __future__ import annotations

import pathlib

import pytest

from tests.helpers.calls import make_call, record
from tests.helpers.cli import one_error_line, run_cli

pytestmark = pytest.mark.timeout(60)


def test_bad_input_is_one_error_line(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "none.db"
    assert "no recording database at" in one_error_line(run_cli("pod", "shop/web", "--db", str(missing)))
    assert "no recording database at" in one_error_line(run_cli("health", "--db", str(missing)))
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {}, {})])
    assert "--since" in one_error_line(run_cli("health", "--db", str(path), "--since", "yesterday-ish"))
    assert "give a pod as NAMESPACE/NAME" in one_error_line(run_cli("pod", "", "--db", str(path)))
    usage = run_cli("health", "--db", str(path), "--format", "csv")
    assert usage.returncode == 2 and "must be one of table, json" in usage.stderr


def test_reading_leaves_the_file_alone(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {}, {})])
    before = path.read_bytes()
    assert run_cli("health", "--db", str(path)).returncode == 0
    assert run_cli("pod", "nobody/none", "--db", str(path)).returncode == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]
