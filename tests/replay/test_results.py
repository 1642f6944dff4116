"""cri_proxy/replay/results.py: verdicts per call, totals per method, and the exit status."""

from __future__ import annotations

from cri_proxy.replay.compare import Difference
from cri_proxy.replay.results import CallResult, ReplayResult, Verdict

RT = "/runtime.v1.RuntimeService/"


def result(*verdicts: tuple[str, Verdict]) -> ReplayResult:
    replay = ReplayResult(source="calls.db", target="unix:///run/t.sock", source_sessions=[1],
                          replay_session=None, db_out=None)
    replay.results = [CallResult(i, RT + method, verdict) for i, (method, verdict) in enumerate(verdicts)]
    return replay


def test_only_differences_and_failures_make_it_not_ok() -> None:
    assert result(("Version", Verdict.MATCHED), ("ListPodSandbox", Verdict.SKIPPED)).exit_code == 0
    assert result(("Version", Verdict.MATCHED), ("Version", Verdict.DIFFERED)).exit_code == 1
    assert not result(("Version", Verdict.FAILED)).ok


def test_per_method_rows_by_name() -> None:
    replay = result(("Version", Verdict.MATCHED), ("ListContainers", Verdict.DIFFERED),
                    ("Version", Verdict.SKIPPED), ("Version", Verdict.MATCHED))
    assert replay.per_method() == [("ListContainers", 1, 0, 1, 0, 0), ("Version", 3, 2, 0, 0, 1)]


def test_summary_counts_redacted_calls_that_were_sent() -> None:
    replay = result(("Version", Verdict.MATCHED), ("Version", Verdict.SKIPPED))
    for r in replay.results:
        r.redacted = True
    assert replay.summary() == {"calls": 2, "matched": 1, "differed": 0, "failed": 0, "skipped": 1,
                                "redacted_sent": 1, "ok": True}


def test_call_result_as_dict() -> None:
    r = CallResult(7, RT + "ContainerStatus", Verdict.DIFFERED, reason="1 field differs",
                   differences=[Difference("status.state", "RUNNING", None)])
    data = r.as_dict()
    assert (data["call_id"], data["method"], data["result"]) == (7, "ContainerStatus", "differed")
    assert data["differences"] == [{"path": "status.state", "recorded": "RUNNING", "replayed": None}]
