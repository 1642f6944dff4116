"""cli/options.py: `--db` is one option everywhere (and `$CRI_PROXY_DB` is honoured
everywhere), choices are enums with the same one-line complaint, and `replay DB` / `serve DB`
mean the same as their `--db`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cri_proxy.cli.app import app
from cri_proxy.cli.options import LogLevel, OutputFormat, choice_parser
from cri_proxy.query import DB_ENV

pytestmark = pytest.mark.timeout(30)

COMMANDS: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
REQUIRED = {"run": ["--listen", "unix:///tmp/l.sock", "--runtime-endpoint", "unix:///tmp/r.sock"],
            "replay": ["--target", "unix:///tmp/t.sock"], "serve": ["--listen", "unix:///tmp/s.sock"],
            "pod": ["shop/web"],
            "export": ["--otlp-endpoint", "http://127.0.0.1:4317"],
            "report": ["-o", "/tmp/r.html"]}  # fmt: skip


def parse(command: str, args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv(DB_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return dict(COMMANDS[command].make_context(command, [*REQUIRED.get(command, []), *args]).params)


def db_commands() -> list[str]:
    return sorted(name for name, cmd in COMMANDS.items() if any("--db" in p.opts for p in cmd.params))


def test_db_is_on_every_command_that_reads_or_writes_a_recording() -> None:
    assert db_commands() == ["demo", "export", "health", "install", "pod", "query", "replay", "report", "run", "serve",
                             "stats", "tail"]


@pytest.mark.parametrize("command", db_commands())
def test_db_honours_the_environment_everywhere(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse(command, [], {DB_ENV: "/srv/from-env.db"}, monkeypatch)["db"] == Path("/srv/from-env.db")
    given = parse(command, ["--db", "/srv/given.db"], {DB_ENV: "/srv/from-env.db"}, monkeypatch)
    assert given["db"] == Path("/srv/given.db")  # the command line beats the environment
    unset = parse(command, [], {}, monkeypatch)["db"]
    own_default = {"demo": Path("cri-proxy-demo.db"), "install": Path("/var/lib/cri-proxy/calls.db")}
    assert unset == own_default.get(command)  # the others: None, which each command resolves


def test_choices_are_enums_with_a_one_line_complaint() -> None:
    assert choice_parser(LogLevel)("debug") is LogLevel.debug
    assert choice_parser(OutputFormat)(OutputFormat.csv) is OutputFormat.csv
    with pytest.raises(typer.BadParameter, match="^must be one of table, json, jsonl, csv$"):
        choice_parser(OutputFormat)("xml")
    result = CliRunner().invoke(app, ["fake-runtime", "--listen", "unix:///tmp/f.sock", "--api", "v3"])
    assert result.exit_code == 2 and "must be one of v1, v1alpha2, both" in result.stderr


@pytest.mark.parametrize("command", ["replay", "serve"])
def test_replay_and_serve_take_the_recording_either_way(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    extra = ["--target", f"unix://{tmp_path}/t.sock"] if command == "replay" else ["--listen", f"unix://{tmp_path}/s.sock"]
    runner = CliRunner()
    for args, env in (([str(missing)], {}), (["--db", str(missing)], {}), ([], {DB_ENV: str(missing)}),
                      ([str(missing)], {DB_ENV: str(tmp_path / "other.db")})):  # fmt: skip
        result = runner.invoke(app, [command, *args, *extra], env={DB_ENV: None, **env})
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"cri-proxy: error: no recording database at {missing}"), (args, env)
    twice = runner.invoke(app, [command, str(missing), "--db", str(tmp_path / "other.db"), *extra], env={DB_ENV: None})
    assert twice.exit_code == 2
    assert twice.stderr == (f"cri-proxy: error: the recording is given twice ({missing} and --db "
                            f"{tmp_path / 'other.db'}): give it once\n")  # fmt: skip
