"""Deciding, call by call, which fault rule (if any) applies.

The relay asks `FaultBook.decide(facts)` once per request it has the headers of. Rules are
tried in file order and the first that matches and is due wins, as in a firewall: a user
reads the file top to bottom to know what happens. Each rule counts the calls it matched
(for `first`/`every`) and the calls it changed; the counts survive a reload for rules whose
definition did not change, so a SIGHUP that adds a rule does not restart another's
"first 3 calls". A window's `after`/`for` counts from when its rule was loaded: at start, or
by the reload or control-socket change (cri_proxy.proxy.control) that brought it in.

`undecided(facts)` tells the relay whether a rule needing body facts (pod, container,
image) could still match, so only those calls pay for a look at their request message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cri_proxy.faults.rules import MATCH_KEYS, Action, FaultRule, matches_glob


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What is known of a call when it is decided. None is unknown (not "no match")."""

    method: str
    api: str | None = None
    client: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    image: str | None = None

    def get(self, key: str) -> str | None:
        value: str | None = getattr(self, key)
        return value


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    action: Action
    delay_s: float = 0.0  # for a delay action, the delay drawn for this call


@dataclass(slots=True)
class RuleCounts:
    matched: int = 0
    injected: int = 0


@dataclass(slots=True)
class _Entry:
    rule: FaultRule
    since: float  # when the rule was loaded: its window's `after`/`for` count from here
    counts: RuleCounts = field(default_factory=RuleCounts)


class FaultBook:
    """The loaded rules and their counters; replace() swaps the rules in place."""

    def __init__(self, rules: Iterable[FaultRule] = (), *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._entries: list[_Entry] = []
        self._watchers: list[Callable[[], None]] = []
        self.generation = 0  # moves at every replace(): what a caller cached of could_match() is stale
        self.needs_body = False  # some rule needs body facts (set by replace())
        self.loaded_unix = clock()
        self.replace(rules)

    def replace(self, rules: Iterable[FaultRule]) -> None:
        """New rules; an unchanged rule (same name and definition) keeps its counters and clock."""
        old = {(e.rule.name, e.rule.definition): e for e in self._entries}
        now = self._clock()
        self._entries = [old.get((r.name, r.definition)) or _Entry(r, now) for r in rules]
        self.generation += 1
        self.needs_body = any(e.rule.needs_body for e in self._entries)
        if not old:
            self.loaded_unix = now
        for watcher in self._watchers:
            watcher()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every replace() (SIGHUP, the control socket)."""
        self._watchers.append(callback)

    @property
    def rules(self) -> tuple[FaultRule, ...]:
        return tuple(e.rule for e in self._entries)

    def counts(self) -> dict[str, RuleCounts]:
        return {e.rule.name: e.counts for e in self._entries}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def undecided(self, facts: CallFacts) -> bool:
        """True when a rule matches on every fact known so far but needs body facts still unknown."""
        return any(e.rule.needs_body and _matches(e.rule, facts, allow_unknown=True)
                   and any(facts.get(key) is None for key, _ in e.rule.match) for e in self._entries)

    def could_match(self, facts: CallFacts) -> bool:
        """True when some rule matches `facts`, whatever its window and counts: a call for which
        this is False is never changed (and need not be decided) until the rules are replaced."""
        return any(_matches(e.rule, facts) for e in self._entries)

    def decide(self, facts: CallFacts) -> Decision | None:
        """The first due rule matching `facts`, counted; None lets the call through untouched."""
        now = self._clock()
        for entry in self._entries:
            rule = entry.rule
            if not rule.window.contains(now, entry.since) or not _matches(rule, facts):
                continue
            entry.counts.matched += 1
            if not _due(rule, entry.counts.matched) or self._rng.random() >= rule.probability:
                continue
            entry.counts.injected += 1
            action = rule.action
            delay = self._rng.uniform(action.delay_min_s, action.delay_max_s) if action.kind == "delay" else 0.0
            return Decision(rule.name, action, delay)
        return None


def _matches(rule: FaultRule, facts: CallFacts, *, allow_unknown: bool = False) -> bool:
    for key, globs in rule.match:
        value = facts.get(key)
        if value is None and allow_unknown:
            continue
        if not matches_glob(value, globs):
            return False
    return True


def _due(rule: FaultRule, nth: int) -> bool:
    if rule.first is not None and nth > rule.first:
        return False
    return rule.every is None or nth % rule.every == 0


__all__ = ["MATCH_KEYS", "CallFacts", "Decision", "FaultBook", "RuleCounts"]
