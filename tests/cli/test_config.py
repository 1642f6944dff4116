"""cri_proxy/cli/config.py: `cri-proxy run --config FILE` and the CRI_PROXY_* variables, as a
user runs them: the precedence flag > variable > file > default, and a bad file stops the
command in one line naming the key and the file, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cri_proxy.cli.app import app
from cri_proxy.cli.config import env_name, keys
from tests.helpers.cli import cli_env, one_error_line, run_cli

pytestmark = pytest.mark.timeout(30)

RUN = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def missing_runtime(result_line: str) -> str:
    """Which runtime socket the command went for: the one its error line names."""
    return result_line.split("runtime endpoint ", 1)[1].split(":", 2)[1]


def test_flag_beats_variable_beats_file(tmp_path: Path) -> None:
    """The runtime socket does not exist, so `run` stops at once naming the one it was given."""
    config = write(tmp_path, f'listen = "unix://{tmp_path}/l.sock"\nruntime-endpoint = "unix://{tmp_path}/file.sock"\n')
    from_file = one_error_line(run_cli("run", "--config", str(config), cwd=tmp_path))
    assert missing_runtime(from_file) == f"//{tmp_path}/file.sock"
    env = cli_env(CRI_PROXY_RUNTIME_ENDPOINT=f"unix://{tmp_path}/env.sock")
    from_env = one_error_line(run_cli("run", "--config", str(config), env=env, cwd=tmp_path))
    assert missing_runtime(from_env) == f"//{tmp_path}/env.sock"
    from_flag = one_error_line(run_cli("run", "--config", str(config), "--runtime-endpoint",
                                       f"unix://{tmp_path}/flag.sock", env=env, cwd=tmp_path))
    assert missing_runtime(from_flag) == f"//{tmp_path}/flag.sock"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # nothing started


def test_the_file_can_name_itself_through_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, 'retain = "forever"\n')
    env = cli_env(CRI_PROXY_CONFIG=str(config), CRI_PROXY_DB=str(tmp_path / "calls.db"))
    line = one_error_line(run_cli("run", "--listen", f"unix://{tmp_path}/l.sock", "--runtime-endpoint",
                                  f"unix://{tmp_path}/r.sock", env=env, cwd=tmp_path))
    assert "--retain 'forever': expected a duration" in line  # the file's value reached the recorder's check


@pytest.mark.parametrize(("text", "says"), [
    ('retian = "7d"\n', "unknown key 'retian' (not a flag of cri-proxy run)"),
    ('queue-calls = "5"\n', "key 'queue-calls' must be an integer, not a string"),
    ("grace-period = true\n", "key 'grace-period' must be a number, not true/false"),
    ('require-recording = "yes"\n', "key 'require-recording' must be true or false, not a string"),
    ('exclude = "List*"\n', "key 'exclude' must be a list of strings, not a string"),
    ("exclude = [1]\n", "key 'exclude' must be a list of strings, not a list"),
    ('[listen]\npath = "x"\n', "key 'listen' must be a string, not a table"),
    ('runtime-endpoint = "a"\ncontainer-runtime-endpoint = "b"\n', "sets the same flag as another key"),
    ("listen = \n", "not valid TOML"),
])
def test_a_bad_file_is_one_line_naming_the_key_and_file(tmp_path: Path, text: str, says: str) -> None:
    config = write(tmp_path, text)
    line = one_error_line(run_cli("run", "--config", str(config), "--listen", f"unix://{tmp_path}/l.sock",
                                  "--runtime-endpoint", f"unix://{tmp_path}/r.sock", cwd=tmp_path))
    assert line.startswith(f"cri-proxy: error: {config}: ") and says in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(run_cli("run", "--config", str(tmp_path / "nope.toml")))
    assert f"cannot read the config file {tmp_path}/nope.toml" in line


def test_every_flag_of_run_is_a_key_and_a_variable() -> None:
    known = keys(RUN)
    options = [p for p in RUN.params if p.param_type_name == "option" and p.name not in ("config", "help")]
    for param in options:
        assert all(opt[2:] in known for opt in param.opts if opt.startswith("--")), param.opts
    assert env_name(next(p for p in options if p.name == "runtime_endpoint")) == "CRI_PROXY_RUNTIME_ENDPOINT"
    assert env_name(next(p for p in options if p.name == "db")) == "CRI_PROXY_DB"


def test_a_repeatable_flag_from_the_environment_splits_on_spaces(tmp_path: Path) -> None:
    env = cli_env(CRI_PROXY_SAMPLE="List*=0.5 Version=2", CRI_PROXY_DB=str(tmp_path / "calls.db"))
    line = one_error_line(run_cli("run", "--listen", f"unix://{tmp_path}/l.sock", "--runtime-endpoint",
                                  f"unix://{tmp_path}/r.sock", env=env, cwd=tmp_path))
    assert "--sample 'Version=2'" in line  # the second word, checked on its own
