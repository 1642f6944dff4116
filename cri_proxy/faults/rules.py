"""Fault rules: what a `--faults` file says, parsed and checked once.

A rules file is a list of `match -> action` rules (examples/faults/ has the node e2e
scenarios as files). Parsing is plain data in, frozen dataclasses out, and every mistake is
collected, not just the first: a user fixing a file should see each bad rule on its own line
("faults.yaml: rule 2 (pull-fails): action: ..."), the way a compiler reports, and a proxy
never starts with half its rules. The relay process matches these per call (book.py), so
nothing here loads protobuf.
"""

from __future__ import annotations

import fnmatch
import pathlib
from dataclasses import dataclass, field
from typing import Any, Final

from cri_proxy.faults.fields import (
    Problems,
    Window,
    duration,
    optional_int,
    text_list,
    window,
)
from cri_proxy.model.errors import ConfigError
from cri_proxy.model.status import StatusCode, status_code

# What a rule may match on: the call's facts (book.CallFacts) with the same names.
MATCH_KEYS: Final = ("method", "client", "namespace", "pod", "container", "image", "api")
# Facts only a request body (or what the relay learned from earlier answers) can give.
BODY_KEYS: Final = frozenset({"namespace", "pod", "container", "image"})
ACTION_KEYS: Final = ("error", "delay", "hang", "close")
RULE_KEYS: Final = ("name", "match", "action", "probability", "first", "every", "window")


class FaultRulesError(ConfigError):
    """A rules file that cannot be used; `problems` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems) if len(problems) < 4 else
                         f"{problems[0]} (and {len(problems) - 1} more problems: `cri-proxy faults check`)")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Action:
    """Exactly one of: an error answered without forwarding, a delay before forwarding, a hang
    (until the client's deadline, or `hang_s`), or the client's connection closed."""

    kind: str  # "error" | "delay" | "hang" | "close"
    code: int = StatusCode.UNAVAILABLE  # error
    message: str = ""  # error
    delay_min_s: float = 0.0  # delay: a fixed delay has min == max
    delay_max_s: float = 0.0
    hang_s: float | None = None  # hang: None = until the client's deadline


@dataclass(frozen=True, slots=True)
class FaultRule:
    name: str
    action: Action
    # Each match key -> glob patterns, any of which may match ("method": ["PullImage"]).
    match: tuple[tuple[str, tuple[str, ...]], ...] = ()
    probability: float = 1.0
    first: int | None = None  # only the first N matching calls
    every: int | None = None  # every Nth matching call (the Nth, 2Nth, ...)
    window: Window = field(default_factory=Window)
    definition: str = field(default="", compare=False)  # the rule as written, to keep counters on reload

    @property
    def needs_body(self) -> bool:
        """True when the rule can only be decided with facts a request body carries."""
        return any(key in BODY_KEYS for key, _ in self.match)

    def patterns(self, key: str) -> tuple[str, ...] | None:
        return next((globs for name, globs in self.match if name == key), None)


def matches_glob(value: str | None, globs: tuple[str, ...]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, glob) for glob in globs)


def load_rules(path: pathlib.Path) -> tuple[FaultRule, ...]:
    """The rules of a YAML (or JSON: JSON is YAML too) file; FaultRulesError with every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaultRulesError([f"{path}: cannot read: {exc}"]) from None
    return parse_rules(read_yaml(text, str(path)), str(path))


def read_yaml(text: str, source: str) -> Any:
    """The data of a rules text (YAML or JSON); FaultRulesError naming the line of a syntax error."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise FaultRulesError([f"{source}:{where} not YAML: {getattr(exc, 'problem', exc)}"]) from None


def parse_rules(data: Any, source: str) -> tuple[FaultRule, ...]:
    """Rules from parsed data: `{"rules": [...]}` or a bare list; an empty file is no rules."""
    if data is None:
        return ()
    items = data.get("rules", None) if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"rules"}:
        raise FaultRulesError([f"{source}: unknown top-level key(s) {sorted(set(data) - {'rules'})}: "
                               "expected `rules:` and a list"])
    if not isinstance(items, list):
        raise FaultRulesError([f"{source}: expected `rules:` followed by a list of rules"])
    problems = Problems(source)
    rules: list[FaultRule] = []
    names: set[str] = set()
    for index, item in enumerate(items, 1):
        rule = _parse_rule(item, index, problems)
        if rule is None:
            continue
        if rule.name in names:
            problems.add(f"rule {index} ({rule.name})", "name used by an earlier rule")
        names.add(rule.name)
        rules.append(rule)
    if problems.lines:
        raise FaultRulesError(problems.lines)
    return tuple(rules)


def _parse_rule(item: Any, index: int, problems: Problems) -> FaultRule | None:
    if not isinstance(item, dict):
        problems.add(f"rule {index}", "expected a mapping with name, match and action")
        return None
    name = item.get("name")
    where = f"rule {index} ({name})" if isinstance(name, str) and name else f"rule {index}"
    before = len(problems.lines)
    if not isinstance(name, str) or not name:
        problems.add(where, "needs a `name` (it is recorded on every call the rule changes)")
    for key in sorted(set(item) - set(RULE_KEYS)):
        problems.add(where, f"unknown key {key!r} (expected one of {', '.join(RULE_KEYS)})")
    match = _parse_match(item.get("match", {}), where, problems)
    action = _parse_action(item.get("action"), where, problems)
    probability = item.get("probability", 1.0)
    if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 < probability <= 1:
        problems.add(where, f"probability {probability!r}: expected a number above 0 and at most 1")
        probability = 1.0
    first = optional_int(item.get("first"), f"{where}: first", problems)
    every = optional_int(item.get("every"), f"{where}: every", problems)
    span = window(item.get("window"), f"{where}: window", problems)
    if action is None or len(problems.lines) > before:
        return None
    return FaultRule(name=str(name), action=action, match=match, probability=float(probability),
                     first=first, every=every, window=span, definition=repr(sorted(item.items(), key=str)))


def _parse_match(data: Any, where: str, problems: Problems) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if data is None:
        return ()
    if not isinstance(data, dict):
        problems.add(where, "match: expected a mapping such as {method: PullImage}")
        return ()
    result = []
    for key, value in data.items():
        if key not in MATCH_KEYS:
            problems.add(where, f"match: unknown key {key!r} (expected one of {', '.join(MATCH_KEYS)})")
            continue
        globs = text_list(value, f"{where}: match.{key}", problems)
        if key == "api" and any(g not in ("v1", "v1alpha2") for g in globs):
            problems.add(where, f"match.api {value!r}: expected v1 or v1alpha2")
        result.append((key, globs))
    return tuple(result)


def _parse_action(data: Any, where: str, problems: Problems) -> Action | None:
    if isinstance(data, str) and data == "close":
        return Action("close")
    if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in ACTION_KEYS:
        problems.add(where, "action: expected exactly one of error, delay, hang or close, "
                            "e.g. {error: {code: UNAVAILABLE, message: injected}}")
        return None
    kind, value = next(iter(data.items()))
    if kind == "error":
        return _parse_error(value, where, problems)
    if kind == "delay":
        if isinstance(value, dict):
            low = duration(value.get("min"), f"{where}: action.delay.min", problems)
            high = duration(value.get("max"), f"{where}: action.delay.max", problems)
            if set(value) - {"min", "max"} or low > high:
                problems.add(where, "action.delay: expected a duration, or {min: D, max: D} with min <= max")
            return Action("delay", delay_min_s=low, delay_max_s=high)
        seconds = duration(value, f"{where}: action.delay", problems)
        return Action("delay", delay_min_s=seconds, delay_max_s=seconds)
    if kind == "hang":
        if value in ("deadline", None):
            return Action("hang")
        return Action("hang", hang_s=duration(value, f"{where}: action.hang", problems))
    if value not in (True, None):
        problems.add(where, "action.close: expected `close: true`")
    return Action("close")


def _parse_error(value: Any, where: str, problems: Problems) -> Action | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = {"code": value}
    if not isinstance(value, dict) or set(value) - {"code", "message"} or "code" not in value:
        problems.add(where, "action.error: expected {code: NAME, message: TEXT}")
        return None
    try:
        code = status_code(str(value["code"]))
    except ValueError:
        problems.add(where, f"action.error.code {value['code']!r}: not a gRPC status (e.g. UNAVAILABLE, 14)")
        return None
    if not 0 < code <= max(StatusCode):
        problems.add(where, f"action.error.code {value['code']!r}: expected an error status, 1 to 16")
        return None
    message = value.get("message", f"injected by cri-proxy fault rule {where}")
    if not isinstance(message, str) or not message.isprintable():
        problems.add(where, "action.error.message: expected one line of text")
        return None
    return Action("error", code=code, message=message)
