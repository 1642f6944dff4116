"""Shared fixtures: short socket folders, and the interpreter that runs the CLI in subprocesses;
the package compiled to bytecode before the tests start processes of it."""

from __future__ import annotations

import compileall
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The session-wide fixtures (recordings, containerd), one instance for the whole run.
pytest_plugins = ["tests.helpers.session_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package's modules to bytecode once, before any test starts a process: each
    `python -m cri_proxy` the tests start (hundreds: proxies, their recorder processes, CLI
    commands) then reads the cached bytecode instead of compiling its ~80 modules from source.
    Python caches them itself on the first import, but not where PYTHONDONTWRITEBYTECODE is set
    (as on some CI and development machines); then every process compiled them anew (measured:
    a third of a `cri-proxy run` start-up's instructions). Up-to-date files are skipped."""
    if not hasattr(config, "workerinput"):  # once, not again in each pytest-xdist worker (-n N)
        compileall.compile_dir(ROOT / "cri_proxy", quiet=1)


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
