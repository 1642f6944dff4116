"""Shared fixtures: short socket folders, and the interpreter that runs the CLI in subprocesses."""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The session-wide fixtures (recordings, containerd), one instance for the whole run.
pytest_plugins = ["tests.helpers.session_fixtures"]


@pytest.fixture
def sock_dir() -> Iterator[pathlib.Path]:
    """A fresh folder under /tmp with a short path: unix socket paths are capped near 108 bytes."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="crip-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli_cmd() -> list[str]:
    """The argv prefix that runs this checkout's `cri-proxy` command."""
    return [sys.executable, "-m", "cri_proxy"]
