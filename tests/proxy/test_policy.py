"""The relay's translation policy: what it holds with and without fault rules."""

from __future__ import annotations

from cri_proxy.faults.book import FaultBook
from cri_proxy.faults.rules import parse_rules
from cri_proxy.proxy.podfacts import FactTable
from cri_proxy.proxy.policy import TranslationPolicy


def test_without_rules_nothing_watches_the_book() -> None:
    policy = TranslationPolicy(lambda path: "v1alpha2" if "/runtime.v1." in path else None, cgroup_driver="systemd")
    assert policy.unread is None and policy.caches is None and policy.faults is None
    assert policy.upstream_api("/runtime.v1.RuntimeService/Version") == "v1alpha2"
    assert policy.upstream_api("/runtime.v1alpha2.RuntimeService/Version") is None
    assert isinstance(policy.pod_facts, FactTable) and policy.announced == set()


def test_with_rules_the_unread_connections_and_the_caches_follow_the_same_book() -> None:
    book = FaultBook(parse_rules([{"name": "pulls", "match": {"method": "PullImage"},
                                   "action": {"error": {"code": "UNAVAILABLE", "message": "m"}}}], "test"))
    policy = TranslationPolicy(lambda path: None, faults=book)
    assert policy.unread is not None and policy.caches is not None
    assert policy.unread.book is book and len(policy.unread.conns) == 0  # no connection relayed unread yet
    other = TranslationPolicy(lambda path: None, faults=book)
    assert other.pod_facts is not policy.pod_facts  # each policy learns its own pods
