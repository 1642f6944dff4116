"""cri_proxy/cli/run.py: `cri-proxy run` refuses bad flags in one line, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import one_error_line, run_cli

pytestmark = pytest.mark.timeout(30)


def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "--listen", f"unix://{tmp_path}/l.sock", "--runtime-endpoint", f"unix://{tmp_path}/r.sock", *extra]


@pytest.mark.parametrize(("extra", "says"), [
    (("--db", "calls.db", "--sample", "List*=2"), "--sample 'List*=2': expected METHOD_GLOB=FRACTION"),
    (("--db", "calls.db", "--retain", "forever"), "--retain 'forever': expected a duration"),
    (("--db", "calls.db", "--redact", "everything"), "--redact/--no-redact: unknown redact option 'everything'"),
    (("--image-endpoint", "tcp://127.0.0.1:1"), "--image-endpoint 'tcp://127.0.0.1:1': only unix:// sockets"),
    (("--control", "relative.sock"), "--control 'relative.sock': expected unix:///absolute/path.sock"),
    (("--control", "unix://{tmp}/l.sock"), "--control must be a socket of its own, not the --listen socket"),
])
def test_bad_flags_are_one_line_and_nothing_starts(tmp_path: Path, extra: tuple[str, ...], says: str) -> None:
    extra = tuple(arg.replace("{tmp}", str(tmp_path)) for arg in extra)
    line = one_error_line(run_cli(*run_args(tmp_path, *extra), cwd=tmp_path))
    assert says in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no socket, no database


def test_a_relative_listen_path_is_refused(tmp_path: Path) -> None:
    result = run_cli("run", "--listen", "cri.sock", "--runtime-endpoint", f"unix://{tmp_path}/r.sock")
    assert "--listen 'cri.sock': expected unix:///absolute/path.sock" in one_error_line(result)


@pytest.mark.parametrize(("mode", "says"), [("rw", "is not an octal mode such as 0660"),
                                            ("1777", "is not a permission mode (0000 to 0777)")])
def test_socket_mode_must_be_an_octal_permission(tmp_path: Path, mode: str, says: str) -> None:
    result = run_cli(*run_args(tmp_path, "--socket-mode", mode))
    assert result.returncode == 2 and says in result.stderr
