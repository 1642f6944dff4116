"""`cri-proxy faults check` prints the rules in order, or every problem on its own line; the
control commands say what keeps them from a proxy (tests/proxy/test_control.py drives them
against a running one)."""

from __future__ import annotations

import pathlib
import socket

from cri_proxy.faults.rules import load_rules
from cri_proxy.faults.book import FaultBook
from tests.conftest import ROOT
from tests.helpers.cli import cli_env, run_cli


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
        assert FaultBook(load_rules(path)).rules == load_rules(path)  # `run --faults` starts with it


def test_the_control_commands_say_in_one_line_why_they_cannot_reach_the_proxy(sock_dir: pathlib.Path) -> None:
    missing = f"unix://{sock_dir}/none.sock"
    result = run_cli("faults", "list", "--control", missing)
    assert (result.returncode, result.stderr) == (
        2, f"cri-proxy: error: control socket {missing}: no such socket; is cri-proxy running with --control {missing}?\n")
    stale = sock_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound and closed, never listening: what a killed proxy leaves
    result = run_cli("faults", "clear", env={**cli_env(), "CRI_PROXY_CONTROL": f"unix://{stale}"})
    assert (result.returncode, result.stderr) == (
        2, f"cri-proxy: error: control socket unix://{stale}: nothing listens on it (the cri-proxy that made it "
           "has stopped)\n")
    result = run_cli("faults", "remove", "x", "--control", "tcp://127.0.0.1:1")
    assert result.returncode == 2 and "only unix:// sockets are supported" in result.stderr


def test_add_reads_its_rules_before_it_asks_the_proxy(sock_dir: pathlib.Path) -> None:
    control = f"unix://{sock_dir}/none.sock"  # never reached: each of these fails first
    result = run_cli("faults", "add", "--control", control)
    assert (result.returncode, result.stderr) == (2, "cri-proxy: error: give a rules FILE (- for stdin) or --rule, "
                                                     "one of them\n")
    result = run_cli("faults", "add", "-", "--control", control, input="rules: [{name: a,\n  action: close\n")
    assert result.returncode == 2 and result.stderr.startswith("cri-proxy: error: <stdin>: line 3: not YAML")
    result = run_cli("faults", "add", str(sock_dir / "absent.yaml"), "--control", control)
    assert result.returncode == 2 and f"{sock_dir}/absent.yaml: cannot read" in result.stderr
