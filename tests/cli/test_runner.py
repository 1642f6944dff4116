"""cli/runner.py: the one place a command's outcome becomes an exit status."""

from __future__ import annotations

import asyncio

import pytest
import typer

from cri_proxy.cli.runner import EXIT_ERROR, EXIT_INTERRUPTED, execute, outcome_code, run_loop
from cri_proxy.model.errors import ConfigError, StorageError

pytestmark = pytest.mark.timeout(30)


def test_a_project_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> None:
        raise StorageError("no recording database at /x.db")

    assert outcome_code(main) == EXIT_ERROR == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "cri-proxy: error: no recording database at /x.db\n"


def test_ctrl_c_is_130_and_a_closed_stdout_is_a_quiet_0(capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    def piped() -> None:
        raise BrokenPipeError

    assert outcome_code(interrupted) == EXIT_INTERRUPTED == 130
    assert outcome_code(piped) == 0
    assert capsys.readouterr().err == ""


def test_a_coroutine_runs_on_the_loop_and_its_result_is_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    async def main() -> int:
        seen.append(type(asyncio.get_running_loop()).__module__)
        await asyncio.sleep(0)
        return 1

    async def failing() -> int:
        await asyncio.sleep(0)
        raise ConfigError("--target 'x': bad")

    assert outcome_code(main) == 1
    assert seen == ["uvloop"]  # uvloop is a dependency on Linux: the runner picks it
    assert outcome_code(failing) == 2
    assert capsys.readouterr().err == "cri-proxy: error: --target 'x': bad\n"
    assert run_loop(asyncio.sleep(0, result=7)) == 7


def test_execute_leaves_with_typer_exit_only_when_not_0() -> None:
    execute(lambda: 0)
    execute(lambda: None)
    with pytest.raises(typer.Exit) as exc:
        execute(lambda: 3)
    assert exc.value.exit_code == 3


def test_a_bug_keeps_its_traceback() -> None:
    def main() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        outcome_code(main)
