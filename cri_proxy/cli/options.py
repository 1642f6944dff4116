"""The options several commands share, defined once: the same name, meaning, parsing and
help text wherever they appear (after sqlite-utils' `output_options`).

- `--db` is always the recording database, and always honours `$CRI_PROXY_DB`; what
  happens without either is the command's own (`run` records nothing, the read commands
  look at `/var/lib/cri-proxy/calls.db`, `demo` writes `cri-proxy-demo.db`).
- Choices are enums. Their values are parsed by `choice_parser`, so a wrong one is the same
  short `must be one of ...` usage error it always was, and shells still complete them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from cri_proxy.model.errors import ConfigError
from cri_proxy.query import DB_ENV, DEFAULT_DB
from cri_proxy.query.since import since_unix


class LogLevel(str, enum.Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class OutputFormat(str, enum.Enum):
    """How `query` and `stats` print rows (cri_proxy.query.output)."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


class TailFormat(str, enum.Enum):
    line = "line"
    jsonl = "jsonl"


class UpstreamApi(str, enum.Enum):
    auto = "auto"
    v1 = "v1"
    v1alpha2 = "v1alpha2"


class CgroupDriver(str, enum.Enum):
    systemd = "systemd"
    cgroupfs = "cgroupfs"


class FakeApi(str, enum.Enum):
    """The CRI versions the stand-in runtime serves."""

    v1 = "v1"
    v1alpha2 = "v1alpha2"
    both = "both"


E = TypeVar("E", bound=enum.Enum)


def values(choices: type[enum.Enum]) -> tuple[str, ...]:
    return tuple(str(member.value) for member in choices)


def choice_parser(choices: type[E]) -> Callable[[Any], E]:
    """Parses a command-line word into a member of `choices`, or a usage error naming them."""

    def parse(value: Any) -> E:
        if isinstance(value, choices):
            return value
        try:
            return choices(value)
        except ValueError:
            raise typer.BadParameter(f"must be one of {', '.join(values(choices))}") from None

    return parse


def choice_option(name: str, choices: type[enum.Enum], help: str) -> Any:
    """A `--name` option whose value is one of the enum's."""
    return typer.Option(
        name, parser=choice_parser(choices), metavar="[" + "|".join(values(choices)) + "]", help=help,
        autocompletion=lambda incomplete: [v for v in values(choices) if v.startswith(incomplete)],
    )  # fmt: skip


LOG_LEVELS = values(LogLevel)
LogLevelOption = Annotated[LogLevel, choice_option("--log-level", LogLevel, "debug, info, warning or error.")]

READ_DB_HELP = f"The recording database [default: ${DB_ENV}, else {DEFAULT_DB}]."


def db_option(help: str = READ_DB_HELP) -> Any:
    """`--db PATH`: the recording database, from the command line or `$CRI_PROXY_DB`."""
    return typer.Option("--db", metavar="PATH", envvar=DB_ENV, show_envvar=False, help=help)


DbOption = Annotated[Optional[Path], db_option()]


def format_option(help: str = "Output format: table, json, jsonl or csv.") -> Any:
    return choice_option("--format", OutputFormat, help)


NoTruncOption = Annotated[bool, typer.Option(
    "--no-trunc", "--wide", help="Print table cells and ids in full instead of cutting them short.")]


def since_option(help: str = "Only calls since then: 5m, 2h, or a UTC time.") -> Any:
    return typer.Option("--since", help=help)


def until_option(help: str = "Only calls until then: 5m (ago), or a UTC time.") -> Any:
    return typer.Option("--until", help=help)


def session_option(help: str = "Only this recorded session (sessions.id).") -> Any:
    return typer.Option("--session", help=help)


def read_db(db: Optional[Path]) -> Path:
    """The recording a read command opens: --db (or $CRI_PROXY_DB), else the default."""
    return db if db is not None else Path(DEFAULT_DB)


def db_or_argument(ctx: typer.Context, positional: Optional[Path], db: Optional[Path]) -> Path:
    """`replay DB` and `serve DB` also take the recording as `--db` (or `$CRI_PROXY_DB`), like
    every other command. DB given beats the environment; DB and a different `--db` is an error."""
    if positional is None:
        return read_db(db)
    source = ctx.get_parameter_source("db")
    if db is not None and getattr(source, "name", "") == "COMMANDLINE" and Path(db) != Path(positional):
        raise ConfigError(f"the recording is given twice ({positional} and --db {db}): give it once")
    return positional


def time_range(since: Optional[str], until: Optional[str]) -> tuple[Optional[float], Optional[float]]:
    """`--since` and `--until` as unix seconds (None: open-ended); ConfigError naming the flag."""
    until_at = None
    if until is not None:
        try:
            until_at = since_unix(until)
        except ConfigError:
            raise ConfigError(f"--until {until!r}: give a duration ago (30s, 5m) or a UTC time") from None
    return (since_unix(since) if since else None), until_at
