"""What to keep: method patterns and sampling that spares errors and state-changing calls."""

from __future__ import annotations

import pytest

from cri_proxy.model.call import Outcome, RecordedCall
from cri_proxy.model.errors import ConfigError
from cri_proxy.recorder.keep import KeepPolicy, method_matches


def call(path: str, status: int | None = 0, outcome: Outcome = Outcome.COMPLETED) -> RecordedCall:
    return RecordedCall(conn_id=1, stream_id=1, started_at=0.0, path=path, status_code=status, outcome=outcome)


LIST = "/runtime.v1.RuntimeService/ListContainers"


@pytest.mark.parametrize("pattern, expected", [
    ("ListContainers", True), ("List*", True), ("runtime.v1.RuntimeService/*", True),
    ("/runtime.v1.RuntimeService/ListContainers", True), ("*ImageService*", False), ("Version", False),
    ("runtime.v1alpha2.*", False),
])
def test_method_patterns(pattern: str, expected: bool) -> None:
    assert method_matches(LIST, pattern) is expected


def test_include_and_exclude() -> None:
    policy = KeepPolicy.from_options(include=["runtime.v1.*"], exclude=["Version"], sample=[])
    assert policy.keep(call(LIST))
    assert not policy.keep(call("/runtime.v1.RuntimeService/Version"))
    assert not policy.keep(call("/runtime.v1alpha2.RuntimeService/ListContainers"))
    assert not policy.keep(call("/containerd.services.version.v1.Version/Version"))


def test_sampling_keeps_the_fraction_evenly_but_never_errors_or_mutations() -> None:
    policy = KeepPolicy.from_options(include=[], exclude=[], sample=["List*=0.1", "*=1"])
    kept = [policy.keep(call(LIST)) for _ in range(100)]
    assert sum(kept) == 10 and kept.index(True) == 9 and kept[19]
    assert all(policy.keep(call(LIST, status=5)) for _ in range(20))  # NOT_FOUND: always kept
    assert all(policy.keep(call(LIST, outcome=Outcome.CANCELLED)) for _ in range(5))
    assert all(policy.keep(call("/runtime.v1.RuntimeService/StopContainer")) for _ in range(5))
    assert all(policy.keep(call("/runtime.v1.ImageService/ImageFsInfo")) for _ in range(5))  # "*=1"


def test_zero_sampling_drops_every_successful_call_of_the_method() -> None:
    policy = KeepPolicy.from_options(include=[], exclude=[], sample=["ListContainers=0"])
    assert not any(policy.keep(call(LIST)) for _ in range(10))
    assert policy.keep(call(LIST, status=14))


@pytest.mark.parametrize("bad", ["List*", "=0.5", "List*=2", "List*=lots"])
def test_bad_sampling_rules_are_explained(bad: str) -> None:
    with pytest.raises(ConfigError, match="expected METHOD_GLOB=FRACTION"):
        KeepPolicy.from_options(include=[], exclude=[], sample=[bad])


def test_describe() -> None:
    assert KeepPolicy().describe() == "every call"
    described = KeepPolicy.from_options(include=[], exclude=["Version"], sample=["List*=0.25"]).describe()
    assert described == "not Version; sampling List*=0.25 (errors and state-changing calls always kept)"
