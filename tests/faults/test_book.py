"""The book decides per call: first matching due rule wins, counts, probability, windows,
body facts, and counters kept across a reload for unchanged rules."""

from __future__ import annotations

import random

from cri_proxy.faults.book import CallFacts, FaultBook
from cri_proxy.faults.rules import parse_rules


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def book(*rules: dict[str, object], clock: Clock | None = None, seed: int = 1) -> FaultBook:
    return FaultBook(parse_rules({"rules": list(rules)}, "test"), clock=clock or Clock(), rng=random.Random(seed))


def names(fault_book: FaultBook, facts: CallFacts, n: int) -> list[str | None]:
    return [(d.rule if (d := fault_book.decide(facts)) else None) for _ in range(n)]


PULL = CallFacts(method="PullImage", api="v1", client="kubelet", image="docker.io/library/busybox:1.36")


def test_first_matching_rule_wins_and_others_pass_untouched() -> None:
    b = book({"name": "pull", "match": {"method": "Pull*"}, "action": {"error": "UNAVAILABLE"}},
             {"name": "all", "action": {"delay": "1s"}})
    assert names(b, PULL, 2) == ["pull", "pull"]
    decision = b.decide(CallFacts(method="Version"))
    assert decision is not None and decision.rule == "all" and decision.delay_s == 1.0
    assert book({"name": "pull", "match": {"method": "PullImage"}, "action": "close"}).decide(
        CallFacts(method="ListImages")) is None


def test_first_and_every_count_matching_calls() -> None:
    b = book({"name": "first2", "match": {"method": "PullImage"}, "action": "close", "first": 2})
    assert names(b, PULL, 4) == ["first2", "first2", None, None]
    assert (b.counts()["first2"].matched, b.counts()["first2"].injected) == (4, 2)
    b = book({"name": "third", "match": {"method": "PullImage"}, "action": "close", "every": 3})
    assert names(b, PULL, 7) == [None, None, "third", None, None, "third", None]


def test_probability_is_a_fraction_of_due_calls() -> None:
    b = book({"name": "half", "action": "close", "probability": 0.5}, seed=7)
    hits = sum(d is not None for d in names(b, PULL, 2000))
    assert 850 < hits < 1150


def test_a_window_since_load_opens_and_closes() -> None:
    clock = Clock()
    b = book({"name": "w", "action": "close", "window": {"after": "1s", "for": "2s"}}, clock=clock)
    seen = []
    for step in (0.5, 1.0, 2.9, 3.0, 10.0):
        clock.now = b.loaded_unix + step
        seen.append(b.decide(PULL) is not None)
    assert seen == [False, True, True, False, False]


def test_delay_ranges_are_drawn_within_bounds() -> None:
    b = book({"name": "d", "action": {"delay": {"min": "1s", "max": "3s"}}})
    delays = {round(d.delay_s, 3) for _ in range(200) if (d := b.decide(PULL))}
    assert len(delays) > 50 and min(delays) >= 1.0 and max(delays) <= 3.0


def test_body_facts_match_and_say_when_a_look_at_the_body_is_needed() -> None:
    b = book({"name": "web", "match": {"method": "CreateContainer", "namespace": "default", "pod": "web-*"},
              "action": {"error": "RESOURCE_EXHAUSTED"}})
    headers_only = CallFacts(method="CreateContainer", api="v1")
    assert b.undecided(headers_only)
    assert not b.undecided(CallFacts(method="StartContainer"))  # the method rules it out already
    assert b.decide(headers_only) is None  # unknown is not a match
    assert b.decide(CallFacts(method="CreateContainer", namespace="default", pod="web-0")) is not None
    assert b.decide(CallFacts(method="CreateContainer", namespace="kube-system", pod="web-0")) is None


def test_reload_keeps_counters_of_unchanged_rules_only() -> None:
    first = {"name": "first1", "action": "close", "first": 1}
    b = book(first)
    assert names(b, PULL, 1) == ["first1"]
    b.replace(parse_rules({"rules": [first, {"name": "new", "action": {"delay": "1s"}}]}, "test"))
    assert names(b, PULL, 1) == ["new"]  # first1 already had its one call
    b.replace(parse_rules({"rules": [{"name": "first1", "action": "close", "first": 2}]}, "test"))
    assert names(b, PULL, 3) == ["first1", "first1", None]  # changed: counts again
    b.replace(())
    assert not b and b.decide(PULL) is None


def test_could_match_ignores_windows_and_counts_and_replace_moves_the_generation() -> None:
    clock = Clock()
    b = book({"name": "later", "match": {"method": "PullImage"}, "action": {"error": "UNAVAILABLE"},
              "window": {"after": "1h"}}, clock=clock)
    assert b.could_match(PULL) and b.decide(PULL) is None  # not due yet, but a rule can match it
    assert not b.could_match(CallFacts(method="Version"))
    before = b.generation
    b.replace(parse_rules({"rules": [{"name": "v", "match": {"method": "Version"}, "action": "close"}]}, "t"))
    assert b.generation != before and b.could_match(CallFacts(method="Version")) and not b.could_match(PULL)


def test_a_rule_added_later_counts_its_window_from_its_adding() -> None:
    clock = Clock()
    window = {"after": "0s", "for": "2s"}
    b = book({"name": "early", "match": {"method": "Version"}, "action": "close", "window": window}, clock=clock)
    clock.now += 10  # early's two seconds are long over
    b.replace(b.rules + parse_rules({"rules": [{"name": "late", "action": "close", "window": window}]}, "t"))
    assert names(b, CallFacts(method="Version"), 1) == ["late"]
    clock.now += 2
    assert b.decide(CallFacts(method="Version")) is None
