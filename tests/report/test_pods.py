"""cri_proxy/report/pods.py: one waterfall per pod, container calls tied to their pod, polls
summarised, problems kept as rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.report import pods
from cri_proxy.report.problems import read_problems
from cri_proxy.report.timeaxis import axis_for
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, lifecycle_calls, make_call, record


def _recording(tmp_path: Path, polls: int = 5) -> Path:
    calls = lifecycle_calls()  # pod p1 with container c1 (named app), a failed RunPodSandbox first
    calls += [make_call("ContainerStatus", {"container_id": "c1"}, {"status": {"id": "c1"}}, started=T0 + 50 + i,
                        duration_ms=1.0 + i, stream_id=1001 + 2 * i) for i in range(polls)]  # fmt: skip
    record(tmp_path / "r.db", calls)
    return tmp_path / "r.db"


def _pods(path: Path, selection: Selection = Selection()) -> tuple[list[pods.Pod], int]:
    recording = Recording(path)
    try:
        found = read_problems(recording.conn, selection, axis_for(T0, T0 + 200))
        return pods.read_pods(recording.conn, selection, found.kinds)
    finally:
        recording.close()


def test_a_pods_calls_in_order_with_its_containers_and_pulls(tmp_path: Path) -> None:
    (failed, pod), count = _pods(_recording(tmp_path))
    assert count == 2 and pod.key == "p1" and pod.label() == "shop/web"
    # The RunPodSandbox that failed has no sandbox id: it is the pod by its name.
    assert failed.key == "pod:shop/web" and [row[1] for row in failed.rows] == ["RunPodSandbox"]
    assert failed.rows[0][6] == "grpc_error"
    assert pod.containers == {"c1": "app"}  # the name from CreateContainer's request
    methods = [row[1] for row in pod.rows]
    assert methods == ["RunPodSandbox", "PullImage", "CreateContainer", "StartContainer", "ContainerStatus",
                       "StopContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"]
    starts = [row[2] for row in pod.rows]
    assert starts == sorted(starts) and starts[0] == 0.0  # offsets from the pod's first call
    not_found = pod.rows[4]
    assert (not_found[4], not_found[5], not_found[6]) == ("NOT_FOUND", "app", "grpc_error")  # a problem: its own row
    assert pod.first == T0 + 40 and pod.last_end == pytest.approx(T0 + 134 + 0.001)
    assert pod.problems == 3 and pod.calls == len(pod.rows) + 5  # NotFound twice, DeadlineExceeded


def test_polls_are_summarised(tmp_path: Path) -> None:
    _, pod = _pods(_recording(tmp_path))[0]
    (poll,) = pod.polls.values()
    assert list(pod.polls) == [("ContainerStatus", "app")]
    assert poll.count == 5 and poll.first == T0 + 50 and poll.max_ms == 5.0
    assert poll.total_ms == pytest.approx(15.0)
    assert poll.last_end == pytest.approx(T0 + 54.005)
    drawn = pod.waterfall()
    assert drawn["polls"][0][:3] == ["ContainerStatus", "app", 5] and drawn["wall"] == pytest.approx(94.001)


def test_rows_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods, "MAX_ROWS", 3)
    _, pod = _pods(_recording(tmp_path))[0]
    assert len(pod.rows) == 3 and pod.cut == 7


def test_a_window_after_create_still_finds_the_containers_pod(tmp_path: Path) -> None:
    (pod,), _ = _pods(_recording(tmp_path), Selection(since=T0 + 50))
    assert pod.key == "p1" and pod.containers == {"c1": "app"}
    assert pod.name is None and pod.label() == "p1"  # no call in the window names the pod


def test_pods_with_problems_come_first_when_there_are_too_many(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods, "MAX_PODS", 2)
    quiet = [pods.Pod(f"q{i}", first=T0 + i) for i in range(3)]
    troubled = pods.Pod("bad", first=T0 - 10, problems=1)
    kept = pods.chosen([*quiet, troubled])
    assert [p.key for p in kept] == ["bad", "q2"]  # then the latest; shown first seen first
