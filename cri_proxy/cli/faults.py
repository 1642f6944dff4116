"""`cri-proxy faults`: fault rules. `faults check FILE` checks a rules file the way `run
--faults` will at start, printing every problem on its own line (exit 2), or the rules as the
proxy will apply them, in order. `faults list|add|remove|clear` talk to a running proxy's
control socket (`run --control`; the protocol is cri_proxy.proxy.control's): the client
reads YAML itself and sends the rules as JSON, so the relay never parses YAML off the socket."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Final, Optional

import typer

from cri_proxy.cli.runner import EXIT_ERROR, execute, fail
from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError

CONTROL_ENV: Final = "CRI_PROXY_CONTROL"
DEFAULT_CONTROL: Final = "unix:///run/cri-proxy/control.sock"
TIMEOUT_S: Final = 10.0

faults_app = typer.Typer(help="Fault rules: make the runtime misbehave on purpose, declaratively.",
                         no_args_is_help=True)


@faults_app.command("check")
def check(path: Path = typer.Argument(..., metavar="FILE", help="A rules file (YAML or JSON).")) -> None:
    """Check a rules file and print its rules in the order they are tried."""

    def main() -> int:
        from cri_proxy.faults.describe import describe
        from cri_proxy.faults.rules import FaultRulesError, load_rules

        try:
            rules = load_rules(path)
        except FaultRulesError as exc:
            for line in exc.problems:
                fail(line)
            return EXIT_ERROR
        for index, rule in enumerate(rules, 1):
            typer.echo(describe(index, rule))
        typer.echo(f"{path}: {len(rules)} rule(s), ok")
        return 0

    execute(main)


def control_option() -> Any:
    return typer.Option(DEFAULT_CONTROL, "--control", metavar="unix:///PATH", envvar=CONTROL_ENV,
                        help="The running proxy's control socket (`run --control`); $CRI_PROXY_CONTROL sets it too.")


def ask(endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
    """One request to the control socket, and its answer; ConfigError saying what is wrong."""
    path = unix_path(endpoint, "--control")
    where = f"control socket {endpoint}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps(request, default=_plain).encode() + b"\n")
            reply = sock.makefile("rb").readline()
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such socket; is cri-proxy running with --control {endpoint}?") from None
        except PermissionError:
            raise ConfigError(f"{where}: permission denied (it is mode 0600: run this as the user cri-proxy "
                              "runs as, or as root)") from None
        except ConnectionRefusedError:
            raise ConfigError(f"{where}: nothing listens on it (the cri-proxy that made it has stopped)") from None
        except TimeoutError:
            raise ConfigError(f"{where}: no answer within {TIMEOUT_S:g}s") from None
        except OSError as exc:
            raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(reply)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ConfigError(f"{where}: no answer (is it a cri-proxy control socket?)")
    return answer


def _plain(value: object) -> str:
    """YAML reads an unquoted timestamp as a datetime: sent as the RFC 3339 text it was."""
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} {value!r}")


def _done(answer: dict[str, Any]) -> int:
    """The answer's message, or each of its errors on a line of its own (exit 2)."""
    if not answer.get("ok"):
        for line in answer.get("errors") or ["refused, for no reason given"]:
            fail(line)
        return EXIT_ERROR
    typer.echo(f"{answer.get('message', 'done')}; {len(answer.get('rules', []))} rule(s) loaded")
    return 0


class ListFormat(str, Enum):
    text = "text"
    json = "json"


@faults_app.command("list")
def list_rules(control: str = control_option(),
               format: ListFormat = typer.Option(ListFormat.text, "--format", help="text or json.")) -> None:
    """List the running proxy's rules in the order they are tried, with the calls each matched and changed."""

    def main() -> int:
        answer = ask(control, {"op": "list"})
        if not answer.get("ok"):
            return _done(answer)
        rules = answer.get("rules", [])
        if format is ListFormat.json:
            typer.echo(json.dumps(rules, indent=2))
            return 0
        for rule in rules:
            typer.echo(f"{rule['line']}: {rule['matched']} matched, {rule['injected']} injected")
        typer.echo(f"{len(rules)} rule(s) loaded")
        return 0

    execute(main)


@faults_app.command("add")
def add(path: Optional[Path] = typer.Argument(None, metavar="[FILE]", help="A rules file (YAML or JSON; - for stdin)."),
        rule: Optional[str] = typer.Option(None, "--rule", metavar="YAML",
                                           help="The rule itself, e.g. '{name: x, match: {method: Version}, action: close}'."),
        first: bool = typer.Option(False, "--first", help="Try the new rules before the loaded ones (else after)."),
        control: str = control_option()) -> None:
    """Add rules (a rules file, or one rule) to the running proxy; refused whole on any problem."""

    def main() -> int:
        from cri_proxy.faults.rules import FaultRulesError, read_yaml

        if (path is None) == (rule is None):
            return fail("give a rules FILE (- for stdin) or --rule, one of them")
        if rule is not None or path is None:
            text, source = rule or "", "--rule"
        elif str(path) == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            try:
                text, source = path.read_text(encoding="utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as exc:
                return fail(f"{path}: cannot read: {exc}")
        try:
            data = read_yaml(text, source)
        except FaultRulesError as exc:
            for line in exc.problems:
                fail(line)
            return EXIT_ERROR
        return _done(ask(control, {"op": "add", "rules": data, "source": source, "first": first}))

    execute(main)


@faults_app.command("remove")
def remove(name: str = typer.Argument(..., metavar="NAME", help="The rule's name."),
           control: str = control_option()) -> None:
    """Remove one rule from the running proxy."""
    execute(lambda: _done(ask(control, {"op": "remove", "name": name})))


@faults_app.command("clear")
def clear(control: str = control_option()) -> None:
    """Remove every rule from the running proxy (calls then pass untouched)."""
    execute(lambda: _done(ask(control, {"op": "clear"})))


def register(app: typer.Typer) -> None:
    app.add_typer(faults_app, name="faults")
