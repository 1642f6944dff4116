"""Rules files parse into the rules they say, and every mistake is reported on its own line."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.faults.rules import FaultRulesError, load_rules, parse_rules
from cri_proxy.model.status import StatusCode
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples" / "faults").glob("*.yaml"))


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    return path


def test_every_shipped_example_loads() -> None:
    assert len(EXAMPLES) >= 5
    for path in EXAMPLES:
        rules = load_rules(path)
        assert rules and all(rule.name for rule in rules), path


def test_a_rule_with_every_option(tmp_path: pathlib.Path) -> None:
    (rule,) = load_rules(write(tmp_path, """
rules:
  - name: pull-fails
    match: {method: [PullImage, "Remove*"], client: kubelet, namespace: default, pod: "web-*",
            container: app, image: "busybox*", api: v1}
    action: {error: {code: unavailable, message: registry down}}
    probability: 0.25
    first: 3
    every: 2
    window: {after: 250ms, for: 2m}
"""))
    assert rule.name == "pull-fails"
    assert rule.patterns("method") == ("PullImage", "Remove*")
    assert rule.patterns("image") == ("busybox*",)
    assert rule.action.kind == "error" and rule.action.code == StatusCode.UNAVAILABLE
    assert rule.action.message == "registry down"
    assert (rule.probability, rule.first, rule.every) == (0.25, 3, 2)
    assert (rule.window.start, rule.window.end, rule.window.wall_clock) == (0.25, 120.25, False)
    assert rule.needs_body  # pod, container, image and namespace come from the request


@pytest.mark.parametrize(("action", "expected"), [
    ("{delay: 15s}", ("delay", 15.0, 15.0, None)),
    ("{delay: {min: 1s, max: 3s}}", ("delay", 1.0, 3.0, None)),
    ("{hang: deadline}", ("hang", 0.0, 0.0, None)),
    ("{hang: 10s}", ("hang", 0.0, 0.0, 10.0)),
    ("close", ("close", 0.0, 0.0, None)),
    ("{close: true}", ("close", 0.0, 0.0, None)),
])  # fmt: skip
def test_each_action(tmp_path: pathlib.Path, action: str, expected: tuple[object, ...]) -> None:
    (rule,) = load_rules(write(tmp_path, f"rules:\n  - {{name: r, match: {{method: Version}}, action: {action}}}\n"))
    got = rule.action
    assert (got.kind, got.delay_min_s, got.delay_max_s, got.hang_s) == expected
    assert not rule.needs_body


def test_wall_clock_windows(tmp_path: pathlib.Path) -> None:
    (rule,) = load_rules(write(tmp_path, "rules:\n  - name: r\n    action: close\n"
                                         "    window: {from: '2026-12-01T03:00:00Z', until: 2026-12-01T03:10:00Z}\n"))
    assert rule.window.wall_clock
    assert rule.window.end is not None and rule.window.start is not None
    assert rule.window.end - rule.window.start == 600
    assert rule.window.contains(rule.window.start + 1, 0) and not rule.window.contains(rule.window.end, 0)


def test_every_mistake_is_its_own_line_naming_file_and_rule(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, """
rules:
  - name: one
    match: {methd: PullImage}
    action: {error: {code: UNAVAILBLE}}
  - name: two
    action: {delay: soon}
    probability: 2
  - {name: three, action: {error: OK}}
  - {name: four, action: {error: {code: 14}, delay: 1s}}
  - {action: close}
  - {name: six, action: close, first: 0, window: {after: 1s, from: 2026-01-01}}
  - {name: seven, action: close, match: {api: v2}}
""")
    with pytest.raises(FaultRulesError) as raised:
        load_rules(path)
    problems = raised.value.problems
    assert all(line.startswith(f"{path}: rule ") for line in problems)
    wanted = ["rule 1 (one): match: unknown key 'methd'", "rule 1 (one): action.error.code 'UNAVAILBLE'",
              "rule 2 (two): action.delay: 'soon'", "rule 2 (two): probability 2",
              "rule 3 (three): action.error.code 'OK'", "rule 4 (four): action: expected exactly one",
              "rule 5: needs a `name`", "rule 6 (six): first: 0", "rule 6 (six): window: use either",
              "rule 7 (seven): match.api 'v2'"]
    for fragment in wanted:
        assert sum(fragment in line for line in problems) == 1, (fragment, problems)
    assert len(problems) == len(wanted)


def test_duplicate_names_and_bad_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FaultRulesError, match="rule 2 \\(a\\): name used by an earlier rule"):
        parse_rules({"rules": [{"name": "a", "action": "close"}, {"name": "a", "action": "close"}]}, "f")
    with pytest.raises(FaultRulesError, match=r"faults.yaml: line \d+: not YAML"):
        load_rules(write(tmp_path, "rules:\n  - {name: [\n"))
    with pytest.raises(FaultRulesError, match="expected `rules:` followed by a list"):
        parse_rules({"rules": {"name": "a"}}, "f")
    with pytest.raises(FaultRulesError, match="unknown top-level key"):
        parse_rules({"rule": []}, "f")
    with pytest.raises(FaultRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    assert parse_rules(None, "empty") == ()
