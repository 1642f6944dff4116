"""`cri-proxy faults check` prints the rules in order, or every problem on its own line."""

from __future__ import annotations

import pathlib

from cri_proxy.faults.rules import load_rules
from cri_proxy.proxy.faultwire import load_relay_rules
from tests.conftest import ROOT
from tests.helpers.cli import run_cli


def test_check_prints_each_rule_in_order(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("rules:\n"
                    "  - {name: pull, match: {method: PullImage}, action: {error: {code: 14, message: down}}, first: 2}\n"
                    "  - {name: slow, action: {delay: {min: 1s, max: 3s}}, probability: 0.5}\n"
                    "  - {name: stuck, match: {method: ExecSync}, action: {hang: deadline}}\n")
    result = run_cli("faults", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1. pull: method=PullImage -> error UNAVAILABLE: down (first 2)",
        "2. slow: every call -> delay 1-3s (p=0.5)",
        "3. stuck: method=ExecSync -> hang until the deadline (always)",
        f"{path}: 3 rule(s), ok",
    ]


def test_check_reports_every_problem_and_exits_2(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - {name: a, action: {delay: soon}}\n  - {name: b, action: {error: NOPE}}\n")
    result = run_cli("faults", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"cri-proxy: error: {path}: rule ") for line in lines)
    assert result.stdout == ""


def test_the_shipped_examples_check_and_the_relay_takes_them() -> None:
    for path in sorted((ROOT / "examples" / "faults").glob("*.yaml")):
        result = run_cli("faults", "check", str(path))
        assert result.returncode == 0 and result.stdout.endswith("rule(s), ok\n"), (path, result.stderr)
        assert load_relay_rules(path) == load_rules(path)  # `run --faults` starts with it
