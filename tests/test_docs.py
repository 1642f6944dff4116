"""The README's command reference and the CLI cannot drift apart (after sqlite-utils'
tests/test_docs.py): every command and every option the CLI has is in the reference, every
option the reference's tables name exists on that command, and every command has help."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer

from cri_proxy.cli.app import app
from tests.conftest import ROOT

GROUP: Any = typer.main.get_command(app)
COMMANDS: dict[str, Any] = GROUP.commands
HELP_OPTIONS = {"-h", "--help"}  # every command has them; the reference says so once
TOP = "cri-proxy"  # the reference's name for the top-level command's own options


def reference() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Command reference", 1)[1].split("\n## ", 1)[0]


def sections() -> dict[str, str]:
    """The reference's text per command: from a paragraph opening with `cri-proxy NAME` (or, for a
    group's subcommand, `cri-proxy GROUP NAME`) to the next."""
    found: dict[str, str] = {}
    parts = re.split(r"^`cri-proxy(?: ([a-z-]+(?: [a-z-]+)?))?`", reference(), flags=re.MULTILINE)
    for name, text in zip(parts[1::2], parts[2::2]):
        found[name or TOP] = text
    return found


def options_of(command: Any) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if param.param_type_name == "argument":
            continue  # positional: shown in the usage line, not an option
        names.update(param.opts, getattr(param, "secondary_opts", []))
    return names - HELP_OPTIONS


def documented_options(text: str) -> set[str]:
    """The options named in the first column of the section's option table."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(--?[a-z][a-z0-9-]*)", line.split(" | ", 1)[0]))
    return names - HELP_OPTIONS


def all_commands() -> list[str]:
    """Every command, and every subcommand of a group (`faults check`) by its two names."""
    subcommands = [f"{name} {sub}" for name, group in COMMANDS.items() for sub in getattr(group, "commands", {})]
    return [TOP, *COMMANDS, *subcommands]


def command(name: str) -> Any:
    if name == TOP:
        return GROUP
    group, _, sub = name.partition(" ")
    return COMMANDS[group].commands[sub] if sub else COMMANDS[group]


@pytest.mark.parametrize("name", all_commands())
def test_every_command_is_in_the_reference(name: str) -> None:
    assert name in sections(), f"README.md's command reference has no paragraph opening with `cri-proxy {name}`"


def test_every_documented_command_exists() -> None:
    assert not set(sections()) - set(all_commands()), "README.md documents commands the CLI lacks"


@pytest.mark.parametrize("name", all_commands())
def test_every_option_is_documented_and_every_documented_option_exists(name: str) -> None:
    text = sections().get(name, "")
    have, documented = options_of(command(name)), documented_options(text)
    assert not have - documented, f"cri-proxy {name}: undocumented in README.md's reference: {sorted(have - documented)}"
    assert not documented - have, f"cri-proxy {name}: README.md documents options it lacks: {sorted(documented - have)}"


@pytest.mark.parametrize("name", all_commands()[1:])
def test_every_command_has_help(name: str) -> None:
    assert command(name).help, f"cri-proxy {name} has no help text"


def test_the_reference_parser_sees_the_tables() -> None:
    """A guard for the helpers above: they find the run table's options, and nothing in prose."""
    run = documented_options(sections()["run"])
    assert {"--listen", "--db", "--strict-translation", "--no-strict-translation"} <= run
    assert documented_options("`--listen` in prose\n| option | default |\n") == set()
    assert {"faults", "faults check", "faults add"} <= set(sections())  # a group and its subcommands


def test_readme_opens_with_the_two_commands() -> None:
    blocks = (ROOT / "README.md").read_text().split("```sh\n")
    assert blocks[1].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/cri-proxy demo")
    assert blocks[2].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert blocks[2].split("\n")[0] in ci  # CI runs the README's test command
