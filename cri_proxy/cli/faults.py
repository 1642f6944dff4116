"""`cri-proxy faults`: fault rules files. `faults check FILE` checks a rules file the way
`run --faults` will at start, printing every problem on its own line (exit 2), or the rules
as the proxy will apply them, in order."""

from __future__ import annotations

from pathlib import Path

import typer

from cri_proxy.cli.runner import EXIT_ERROR, execute, fail

faults_app = typer.Typer(help="Fault rules: make the runtime misbehave on purpose, declaratively.",
                         no_args_is_help=True)


def _describe_action(rule: object) -> str:
    from cri_proxy.faults.rules import FaultRule
    from cri_proxy.model.status import status_name

    assert isinstance(rule, FaultRule)
    action = rule.action
    if action.kind == "error":
        return f"error {status_name(action.code)}: {action.message}"
    if action.kind == "delay":
        low, high = action.delay_min_s, action.delay_max_s
        return f"delay {low:g}s" if low == high else f"delay {low:g}-{high:g}s"
    if action.kind == "hang":
        return "hang until the deadline" if action.hang_s is None else f"hang {action.hang_s:g}s"
    return "close the connection"


def _describe_when(rule: object) -> str:
    from cri_proxy.faults.rules import FaultRule

    assert isinstance(rule, FaultRule)
    parts = [f"first {rule.first}"] if rule.first else []
    parts += [f"every {rule.every}th"] if rule.every else []
    parts += [f"p={rule.probability:g}"] if rule.probability < 1 else []
    window = rule.window
    if window.start is not None or window.end is not None:
        unit = "" if window.wall_clock else "s after load"
        parts.append(f"from {window.start if window.start is not None else '-'} "
                     f"until {window.end if window.end is not None else '-'}{unit}")
    return ", ".join(parts) or "always"


@faults_app.command("check")
def check(path: Path = typer.Argument(..., metavar="FILE", help="A rules file (YAML or JSON).")) -> None:
    """Check a rules file and print its rules in the order they are tried."""

    def main() -> int:
        from cri_proxy.faults.rules import FaultRulesError, load_rules

        try:
            rules = load_rules(path)
        except FaultRulesError as exc:
            for line in exc.problems:
                fail(line)
            return EXIT_ERROR
        for index, rule in enumerate(rules, 1):
            match = " ".join(f"{key}={'|'.join(globs)}" for key, globs in rule.match) or "every call"
            typer.echo(f"{index}. {rule.name}: {match} -> {_describe_action(rule)} ({_describe_when(rule)})")
        typer.echo(f"{path}: {len(rules)} rule(s), ok")
        return 0

    execute(main)


def register(app: typer.Typer) -> None:
    app.add_typer(faults_app, name="faults")
