"""The recorder's pipeline against real SQLite files: each peer sees a call once, a failing
peer drops only its call, and the ids come from the call's own messages however big."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.pipeline import Pipeline
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.redact import redact_call
from tests.helpers.calls import POD, make_call, record, rows, version_call, wait_for

pytestmark = pytest.mark.timeout(60)


def big_create(pod: str = "web", namespace: str = "shop") -> RecordedCall:
    """A CreateContainer whose decoded request is well over 4,096 characters (80 env vars)."""
    envs = [{"key": f"APPLICATION_SETTING_NUMBER_{i:02d}", "value": base64.b64encode(b"value-%d" % i).decode()}
            for i in range(80)]  # v1's env value is bytes: base64 in JSON
    config = {"metadata": {"name": "app"}, "image": {"image": "registry.example/app:1.2.3"}, "envs": envs}
    sandbox = {"metadata": {"name": pod, "namespace": namespace, "uid": "u1"}}
    return make_call("CreateContainer", {"pod_sandbox_id": "p1", "config": config, "sandbox_config": sandbox},
                     {"container_id": "c1"})


def test_a_big_call_keeps_its_ids(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [big_create(), big_create("api", "shop")])
    assert rows(path, "SELECT max(length(json)) FROM payloads")[0][0] > 4096
    assert rows(path, "SELECT pod_name, pod_namespace, image, container_id, pod_sandbox_id, redacted "
                      "FROM calls ORDER BY id") == [
        ("web", "shop", "registry.example/app:1.2.3", "c1", "p1", 1),
        ("api", "shop", "registry.example/app:1.2.3", "c1", "p1", 1),
    ]


def test_ids_of_a_call_whose_body_was_stored_before(tmp_path: Path) -> None:
    """The second identical call reuses the stored payload row; its ids are its own all the same."""
    path = tmp_path / "calls.db"
    record(path, [big_create()])
    record(path, [big_create(), big_create()])
    assert rows(path, "SELECT count(*) FROM payloads WHERE length(json) > 4096") == [(1,)]
    assert rows(path, "SELECT DISTINCT pod_name, pod_namespace, image FROM calls") == [
        ("web", "shop", "registry.example/app:1.2.3")]


def test_peers_see_each_call_once_even_when_its_batch_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    seen: list[int] = []

    def counting(call: RecordedCall) -> RecordedCall:
        seen.append(call.stream_id)
        return redact_call(call)

    options = RecorderOptions(retry_interval_s=0.05, busy_timeout_s=0.05, max_attempts=1000, flush_interval_s=0.05)
    recorder = Recorder(path, options=options, redact=counting)
    recorder.start()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer's batches fail and are held
    try:
        for i in range(5):
            call = version_call(i)
            call.stream_id = 2 * i + 1
            recorder.submit(call)
        wait_for(lambda: not recorder.stats.healthy)
        wait_for(lambda: len(seen) == 5)
    finally:
        other.execute("ROLLBACK")
        other.close()
    wait_for(lambda: recorder.stats.recorded == 5)
    recorder.close()
    assert sorted(seen) == [1, 3, 5, 7, 9]


def test_a_failing_redaction_drops_only_its_call(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"

    def broken_for_pull(call: RecordedCall) -> RecordedCall:
        if call.method == "PullImage":
            raise RuntimeError("a bug in redaction")
        return redact_call(call)

    recorder = Recorder(path, redact=broken_for_pull)
    recorder.start()
    recorder.submit(make_call("PullImage", {"image": {"image": "nginx"}, "auth": {"password": "hunter2"}},
                              {"image_ref": "sha256:abc"}))
    recorder.submit(version_call(1))
    recorder.close()
    assert recorder.stats.recorded == 1 and recorder.stats.lost == 1
    assert rows(path, "SELECT method FROM calls") == [("Version",)]
    assert b"hunter2" not in path.read_bytes()


class _Tag:
    """A peer that notes its name on the call, to see the order peers run in."""

    def __init__(self, name: str, drop: bool = False) -> None:
        self.name = name
        self.drop = drop

    def process(self, item: PreparedCall) -> PreparedCall | None:
        item.call.notes.append(self.name)
        return None if self.drop else item


def test_stages_run_in_order_and_a_none_stops_the_call() -> None:
    pipeline = Pipeline([_Tag("a")], [_Tag("b"), _Tag("c", drop=True), _Tag("d")])
    item = pipeline.admit(version_call(1))
    assert item is not None
    assert pipeline.prepare(item) is None
    assert item.call.notes == ["a", "b", "c"]
    ready, dropped = Pipeline().prepare_batch([PreparedCall.of(version_call(2))])
    assert len(ready) == 1 and dropped == 0


def test_admission_declined_is_skipped_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = Recorder(path, pipeline=Pipeline([_Tag("keep", drop=True)]))
    recorder.start()
    recorder.submit(make_call("RunPodSandbox", {"config": POD}, {"pod_sandbox_id": "p1"}))
    recorder.close()
    assert (recorder.stats.skipped, recorder.stats.lost, recorder.stats.recorded) == (1, 0, 0)
