"""Recorded calls as rows: status names, time text, ids. Also the builders other store tests use."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from cri_proxy.model.call import Direction, Message, Outcome, RecordedCall, api_version_of
from cri_proxy.messages.decode import method_types
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.model.options import RecorderOptions
from cri_proxy.store.db import utc_text
from cri_proxy.store.rows import status_name

pytestmark = pytest.mark.timeout(30)

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
IMAGE_METHODS = {"PullImage", "ImageStatus", "RemoveImage", "ListImages", "ImageFsInfo"}


def encode(path: str, direction: str, fields: dict[str, Any]) -> bytes:
    types = method_types(path)
    if types is None:
        raise KeyError(path)
    cls = types.request if direction == "request" else types.response
    return json_format.ParseDict(fields, cls()).SerializeToString()


def make_call(
    method: str,
    request: dict[str, Any] | bytes | None = None,
    response: dict[str, Any] | bytes | None = None,
    *,
    started: float = T0,
    duration_ms: float | None = 1.0,
    status: int | None = 0,
    message: str | None = None,
    outcome: Outcome = Outcome.COMPLETED,
    version: str = "v1",
    stream_id: int = 1,
) -> RecordedCall:
    """A finished CRI call with real protobuf messages (dicts are encoded via the protos)."""
    service = "ImageService" if method in IMAGE_METHODS else "RuntimeService"
    path = f"/runtime.{version}.{service}/{method}"
    call = RecordedCall(
        conn_id=1,
        stream_id=stream_id,
        started_at=started,
        path=path,
        duration_s=None if duration_ms is None else duration_ms / 1000,
        upstream="unix:///run/containerd/containerd.sock",
        peer_pid=4242,
        peer_uid=0,
        client_api=api_version_of(path),
        upstream_api=api_version_of(path),
        request_metadata=[("user-agent", "grpc-go/1.60.1"), ("content-type", "application/grpc")],
        status_code=status,
        status_message=message,
        outcome=outcome,
    )
    for direction, body in ((Direction.REQUEST, request), (Direction.RESPONSE, response)):
        if body is None:
            continue
        data = body if isinstance(body, bytes) else encode(path, direction.value, body)
        offset = 0.0 if direction is Direction.REQUEST else (duration_ms or 0) / 1000
        call.add_message(Message(direction, 0, offset, data))
    if status is not None:
        call.trailers = [("grpc-status", str(status))]
    return call


def record(path: Path, calls: list[RecordedCall], **options: Any) -> Recorder:
    """Records the calls with a real Recorder and closes it (everything flushed)."""
    recorder = Recorder(path, options=RecorderOptions(**options))
    recorder.start()
    for call in calls:
        recorder.submit(call)
    recorder.close()
    return recorder


def rows(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


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
