"""Recorded calls as rows: status names, time text, ids. Also the builders other store tests use."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from cri_proxy.store.db import utc_text
from cri_proxy.model.status import status_name
from tests.helpers.calls import T0, make_call, record, rows

pytestmark = pytest.mark.timeout(30)











# -- tests ----------------------------------------------------------------------------------


def test_status_names() -> None:
    assert status_name(0) == "OK"
    assert status_name(5) == "NOT_FOUND"
    assert status_name(16) == "UNAUTHENTICATED"
    assert status_name(None) is None
    assert status_name(99) == "CODE_99"


def test_time_text_has_sqlite_datetime_shape_and_compares_with_it() -> None:
    assert utc_text(T0) == "2027-01-15 08:00:00.000"
    assert utc_text(T0 + 0.9996) == "2027-01-15 08:00:01.000"  # rounding carries into seconds
    conn = sqlite3.connect(":memory:")
    now = time.time()
    recent, old = utc_text(now - 60), utc_text(now - 7200)
    ((in_hour, before),) = conn.execute(
        "SELECT ? > datetime('now', '-1 hour'), ? > datetime('now', '-1 hour')", (recent, old)
    ).fetchall()
    assert (in_hour, before) == (1, 0)


def test_call_row_columns_and_ids(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    run = make_call(
        "RunPodSandbox",
        {"config": {"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}}},
        {"pod_sandbox_id": "p1"},
        duration_ms=120.5,
    )
    create = make_call(
        "CreateContainer",
        {
            "pod_sandbox_id": "p1",
            "config": {"metadata": {"name": "app"}, "image": {"image": "nginx:1"}},
            "sandbox_config": {"metadata": {"name": "web", "namespace": "shop"}},
        },
        {"container_id": "c1"},
        started=T0 + 1,
        stream_id=3,
    )
    failed = make_call("StartContainer", {"container_id": "c1"}, None, status=5, message="gone",
                       started=T0 + 2, stream_id=5)  # fmt: skip
    record(db, [run, create, failed])
    got = rows(
        db,
        "SELECT method, pod_sandbox_id, container_id, image, pod_name, pod_namespace, status_name, "
        "started_at, duration_ms, request_count, response_count, client_api, service, trailers "
        "FROM calls ORDER BY id",
    )
    assert got == [
        ("RunPodSandbox", "p1", None, None, "web", "shop", "OK", "2027-01-15 08:00:00.000", 120.5,
         1, 1, "v1", "runtime.v1.RuntimeService", '[["grpc-status", "0"]]'),
        ("CreateContainer", "p1", "c1", "nginx:1", "web", "shop", "OK", "2027-01-15 08:00:01.000",
         1.0, 1, 1, "v1", "runtime.v1.RuntimeService", '[["grpc-status", "0"]]'),
        ("StartContainer", None, "c1", None, None, None, "NOT_FOUND", "2027-01-15 08:00:02.000",
         1.0, 1, 0, "v1", "runtime.v1.RuntimeService", '[["grpc-status", "5"]]'),
    ]  # fmt: skip
    (json_text,) = rows(db, "SELECT json FROM call_messages WHERE method = 'RunPodSandbox' "
                            "AND direction = 'response'")[0]  # fmt: skip
    assert json_text == '{"pod_sandbox_id":"p1"}'


def test_a_stored_call_reads_back_as_the_recorded_call(tmp_path: Path) -> None:
    from cri_proxy.model.call import Direction, Message, Outcome
    from cri_proxy.recorder.ids import ID_KEYS
    from cri_proxy.store.reader import load_calls
    from cri_proxy.store.readonly import open_readonly
    from cri_proxy.store.rows import ID_COLUMNS
    from cri_proxy.store.selection import Selection

    assert ID_COLUMNS == ID_KEYS  # the writer's ids are the reader's columns
    call = make_call("ContainerStatus", {"container_id": "c1"}, None, started=T0 + 0.25, duration_ms=250.0,
                     status=5, message="no such container")  # fmt: skip
    call.notes = ["translated v1alpha2 -> v1"]
    call.response_metadata = [("content-type", "application/grpc")]
    events = make_call("GetContainerEvents", {}, None, started=T0 + 1, duration_ms=None, status=None,
                       outcome=Outcome.CANCELLED)  # fmt: skip
    events.add_message(Message(Direction.RESPONSE, 0, 0.5, b"\x08\x01"))
    events.add_message(Message(Direction.RESPONSE, 1, 0.75, b"\x08\x02", compressed=True))
    record(tmp_path / "calls.db", [call, events])
    conn = open_readonly(tmp_path / "calls.db")
    try:
        first, second = load_calls(conn, Selection())
    finally:
        conn.close()
    assert first.call == call and second.call == events
    assert (first.id, first.session_id, first.redacted, first.complete) == (1, 1, False, True)
    assert first.ids["container_id"] == "c1" and first.status_name == "NOT_FOUND" and first.failed
    assert second.responses == [b"\x08\x01", b"\x08\x02"] and second.response_offsets_s == [0.5, 0.75]
    assert not second.complete  # a compressed message cannot be replayed as recorded
