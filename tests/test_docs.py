"""Every command and option of the CLI is documented in the README's command reference."""

from __future__ import annotations

import typer

from cri_proxy.cli.app import app
from tests.conftest import ROOT


def test_every_command_and_option_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    reference = readme.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if f"`cri-proxy {name}`" not in reference:
            missing.append(f"command {name}")
        for param in command.params:
            if param.param_type_name == "argument":
                continue  # positional: shown in the usage line, not an option
            for opt in param.opts + getattr(param, "secondary_opts", []):
                if opt != "--help" and f"`{opt}`" not in reference and f"`{opt} " not in reference:
                    missing.append(f"{name} {opt}")
    assert not missing, f"undocumented in README.md's command reference: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    blocks = (ROOT / "README.md").read_text().split("```sh\n")
    assert blocks[1].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cri-proxy demo")
    assert blocks[2].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[2].split("\n")[0] in ci  # CI runs the README's test command
