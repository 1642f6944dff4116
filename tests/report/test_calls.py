"""cri_proxy/report/calls.py: the slowest calls and the listed calls' details within a budget."""

from __future__ import annotations

import json
from pathlib import Path

from cri_proxy.report.calls import Budget, read_details, read_slowest
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, lifecycle_calls, make_call, record


def _recording(tmp_path: Path) -> Path:
    calls = lifecycle_calls()
    calls += [make_call("ContainerStatus", {"container_id": "c1"}, {"status": {"id": "c1", "message": "x" * 300}},
                        started=T0 + 50 + i, stream_id=1001 + 2 * i) for i in range(3)]  # fmt: skip
    record(tmp_path / "r.db", calls)
    return tmp_path / "r.db"


def test_slowest_first_without_streams(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        slow = read_slowest(recording.conn, Selection(), limit=3)
        assert [(row[3], row[2]) for row in slow][:2] == [("RunPodSandbox", 30000.0), ("StopContainer", 30000.0)]
        assert [row[2] for row in slow] == sorted((row[2] for row in slow), reverse=True)
        everything = read_slowest(recording.conn, Selection())
        assert "GetContainerEvents" not in {row[3] for row in everything}
        assert slow[1][6] == "c1" and slow[1][5] is None  # StopContainer names only its container
    finally:
        recording.close()


def test_details_show_the_stored_json_once_per_body(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        ids = [row[0] for row in recording.conn.execute("SELECT id FROM calls WHERE method = 'ContainerStatus' "
                                                         "AND status_code = 0 ORDER BY id")]  # fmt: skip
        calls, texts = read_details(recording.conn, [*ids, ids[0]], Budget())
        assert list(calls) == ids
        first = calls[ids[0]]
        assert first["m"] == "ContainerStatus" and first["st"] == "OK" and first["ct"] == "c1"
        assert json.loads(texts[first["req"][0]]) == {"container_id": "c1"}
        assert json.loads(texts[first["resp"][0]])["status"]["message"] == "x" * 300
        assert {calls[i]["resp"][0] for i in ids} == {first["resp"][0]}  # one body, kept once
        assert len(texts) == 2
        assert ["user-agent", "grpc-go/1.60.1"] in first["md"]
    finally:
        recording.close()


def test_the_budget_caps_calls_text_and_each_message(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        ids = [row[0] for row in recording.conn.execute("SELECT id FROM calls ORDER BY id")]
        calls, _ = read_details(recording.conn, ids, Budget(calls=2))
        assert list(calls) == ids[:2]
        status = [row[0] for row in recording.conn.execute("SELECT id FROM calls WHERE method = 'ContainerStatus' "
                                                            "AND status_code = 0")]  # fmt: skip
        calls, texts = read_details(recording.conn, status, Budget(message_chars=50))
        answer = texts[calls[status[0]]["resp"][0]]
        assert answer.startswith('{"status"') and "more characters" in answer and len(answer) < 150
        calls, texts = read_details(recording.conn, status, Budget(text_chars=30))
        assert calls[status[0]]["resp"] == [None] and calls[status[0]]["req"] != [None]  # over the page's budget
    finally:
        recording.close()
