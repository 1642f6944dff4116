"""One rule in words (faults/describe.py), as `faults check` and `faults list` print it."""

from __future__ import annotations

from cri_proxy.faults.describe import describe, describe_action, describe_match, describe_when
from cri_proxy.faults.rules import parse_rules


def test_each_part_of_a_rule_in_words() -> None:
    rules = parse_rules({"rules": [
        {"name": "pull", "match": {"method": ["PullImage", "ImageStatus"], "api": "v1"},
         "action": {"error": {"code": "UNAVAILABLE", "message": "down"}}, "first": 2, "every": 3},
        {"name": "slow", "action": {"delay": {"min": "250ms", "max": "2s"}}, "probability": 0.25},
        {"name": "fixed", "action": {"delay": "15s"}, "window": {"after": "1s", "for": "2s"}},
        {"name": "stuck", "action": {"hang": "deadline"}},
        {"name": "stuck-10", "action": {"hang": "10s"}, "window": {"from": "2026-12-01T03:00:00Z"}},
        {"name": "bye", "action": "close"},
    ]}, "test")
    assert [describe_match(r) for r in rules] == ["method=PullImage|ImageStatus api=v1"] + ["every call"] * 5
    assert [describe_action(r) for r in rules] == [
        "error UNAVAILABLE: down", "delay 0.25-2s", "delay 15s", "hang until the deadline", "hang 10s",
        "close the connection"]
    assert [describe_when(r) for r in rules] == [
        "first 2, every 3th", "p=0.25", "from 1.0 until 3.0s after load", "always",
        "from 1796094000.0 until -", "always"]  # a wall-clock window: Unix times
    assert describe(3, rules[2]) == "3. fixed: every call -> delay 15s (from 1.0 until 3.0s after load)"
