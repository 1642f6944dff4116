"""`--config FILE` and `CRI_PROXY_*` variables: every flag of a command from a file or the
environment, with one precedence: flag > environment > file > default.

The file is TOML (read with the standard `tomllib`); its keys are the command's long flag
names without the dashes (`runtime-endpoint = "unix:///run/containerd/containerd.sock"`),
repeatable flags take a list (`exclude = ["*/ListImages"]`), switches take true or false.
It becomes click's `default_map`, which click consults after the command line and the
environment and before the declared default, so the precedence is click's own. The
variables are click's `auto_envvar_prefix`: `CRI_PROXY_` and the flag's name in capitals
with `_` for `-` (`CRI_PROXY_RUNTIME_ENDPOINT`); a repeatable flag's variable holds its
values separated by spaces.

A key the command does not have, or a value of the wrong type, is one line naming the key and
the file, and exit status 2: a typo must stop the daemon before it starts, not be ignored.
"""

from __future__ import annotations

import inspect
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Final

import typer

from cri_proxy.cli.runner import fail
from cri_proxy.model.errors import ConfigError

ENV_PREFIX: Final = "CRI_PROXY"
CONFIG_ENV: Final = "CRI_PROXY_CONFIG"
CONFIG_PARAM: Final = "config"
CONTEXT: Final = {"auto_envvar_prefix": ENV_PREFIX}  # the command's context_settings


def env_name(param: Any) -> str:
    """The variable that sets `param` (what click's auto_envvar_prefix derives)."""
    if isinstance(param.envvar, str):
        return param.envvar
    return f"{ENV_PREFIX}_{str(param.name).upper()}"


def keys(command: Any) -> dict[str, Any]:
    """The file's keys (every long flag name, aliases too) and the option each sets."""
    found: dict[str, Any] = {}
    for param in command.params:
        if param.param_type_name == "option" and param.name != CONFIG_PARAM:
            for opt in param.opts:
                if opt.startswith("--"):
                    found[opt[2:]] = param
    return found


def _annotations(command: Any) -> dict[str, Any]:
    """The command function's own type hints (typer builds each option's type from them)."""
    function = inspect.unwrap(command.callback) if command.callback is not None else None
    return typing.get_type_hints(function) if function is not None else {}


def _kind(annotation: Any) -> tuple[str, tuple[type, ...]]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list) and args:
        return _kind(args[0])  # Optional[int] and list[str]: the type of one value
    if annotation is bool:
        return "true or false", (bool,)
    if annotation is int:
        return "an integer", (int,)
    if annotation is float:
        return "a number", (int, float)
    return "a string", (str,)  # str, Path, and the enums of choice options


def _type_name(value: Any) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)  # fmt: skip


def _checked(key: str, param: Any, annotation: Any, value: Any, source: Path) -> Any:
    want, allowed = _kind(annotation)
    if param.multiple:
        items = value if isinstance(value, list) else None
        if items is None or not all(isinstance(v, allowed) and not _wrong_bool(v, allowed) for v in items):
            raise ConfigError(f"{source}: key {key!r} must be a list of {_plural(want)}, not {_type_name(value)}")
        return list(items)
    if not isinstance(value, allowed) or _wrong_bool(value, allowed):
        raise ConfigError(f"{source}: key {key!r} must be {want}, not {_type_name(value)}")
    return value


def _wrong_bool(value: Any, types: tuple[type, ...]) -> bool:
    """TOML's true is a Python bool, which is an int: not a number here."""
    return isinstance(value, bool) and bool not in types


def _plural(want: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(want, want)


def load(path: Path, command: Any) -> dict[str, Any]:
    """The file as a default_map (parameter name -> value); ConfigError naming the key and file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    known = keys(command)
    hints = _annotations(command)
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        param = known.get(key)
        if param is None:
            raise ConfigError(f"{path}: unknown key {key!r} (not a flag of cri-proxy {command.name})")
        if param.name in defaults:
            raise ConfigError(f"{path}: key {key!r} sets the same flag as another key")
        defaults[str(param.name)] = _checked(key, param, hints.get(str(param.name), str), value, path)
    return defaults


def apply_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """The `--config` callback: it is eager, so the file is read before any other flag."""
    if value is None:
        return None
    try:
        ctx.default_map = {**(ctx.default_map or {}), **load(value, ctx.command)}
    except ConfigError as exc:
        raise typer.Exit(fail(exc)) from None
    return value


def config_option(help: str = "Read flags from this TOML file (keys are flag names: listen = \"unix:///...\"); "
                              "flags and CRI_PROXY_* variables win over it.") -> Any:
    return typer.Option(None, "--config", metavar="FILE", envvar=CONFIG_ENV, show_envvar=False, is_eager=True,
                        callback=apply_config, help=help)


