"""Fault rules in words: one line per rule, as `faults check` prints a file and `faults list`
the rules a running proxy applies (with its counts). Shared by the CLI and the relay's
control socket (cri_proxy.proxy.control), so both say a rule the same way."""

from __future__ import annotations

from cri_proxy.faults.rules import FaultRule
from cri_proxy.model.status import status_name


def describe_match(rule: FaultRule) -> str:
    return " ".join(f"{key}={'|'.join(globs)}" for key, globs in rule.match) or "every call"


def describe_action(rule: FaultRule) -> str:
    action = rule.action
    if action.kind == "error":
        return f"error {status_name(action.code)}: {action.message}"
    if action.kind == "delay":
        low, high = action.delay_min_s, action.delay_max_s
        return f"delay {low:g}s" if low == high else f"delay {low:g}-{high:g}s"
    if action.kind == "hang":
        return "hang until the deadline" if action.hang_s is None else f"hang {action.hang_s:g}s"
    return "close the connection"


def describe_when(rule: FaultRule) -> str:
    parts = [f"first {rule.first}"] if rule.first else []
    parts += [f"every {rule.every}th"] if rule.every else []
    parts += [f"p={rule.probability:g}"] if rule.probability < 1 else []
    window = rule.window
    if window.start is not None or window.end is not None:
        unit = "" if window.wall_clock else "s after load"
        parts.append(f"from {window.start if window.start is not None else '-'} "
                     f"until {window.end if window.end is not None else '-'}{unit}")
    return ", ".join(parts) or "always"


def describe(index: int, rule: FaultRule) -> str:
    """`1. pull-fails: method=PullImage -> error UNAVAILABLE: down (first 3)`"""
    return f"{index}. {rule.name}: {describe_match(rule)} -> {describe_action(rule)} ({describe_when(rule)})"
