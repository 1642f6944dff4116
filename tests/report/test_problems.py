"""cri_proxy/report/problems.py: problems per bucket and grouped, failing probes, losses."""

from __future__ import annotations

import base64
from pathlib import Path

from cri_proxy.model.call import Outcome
from cri_proxy.model.clock import utc_text
from cri_proxy.report.problems import failed_probes, read_losses, read_problems, readable_bytes
from cri_proxy.report.timeaxis import axis_for
from cri_proxy.store.db import open_database
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.calls import POD, T0, make_call, record

CID = "c" * 64


def _recording(tmp_path: Path) -> Path:
    calls = [
        make_call("CreateContainer", {"pod_sandbox_id": "p1", "config": {"metadata": {"name": "app"}},
                                      "sandbox_config": POD}, {"container_id": CID}, started=T0, stream_id=1),
        make_call("ContainerStatus", {"container_id": "a" * 64}, None, started=T0 + 1, status=5,
                  message=f"container \"{'a' * 64}\" not found", stream_id=3),
        make_call("ContainerStatus", {"container_id": "b" * 64}, None, started=T0 + 2, status=5,
                  message=f"container \"{'b' * 64}\" not found", stream_id=5),
        make_call("GetContainerEvents", {}, None, started=T0 + 3, duration_ms=None, status=None,
                  outcome=Outcome.CANCELLED, stream_id=7),
        make_call("ExecSync", {"container_id": CID, "cmd": ["cat", "/ready"]}, {"exit_code": 1}, started=T0 + 4,
                  stream_id=9),
        make_call("ExecSync", {"container_id": CID, "cmd": ["cat", "/ready"]},
                  {"exit_code": 3, "stderr": base64.b64encode(b"no such file").decode()}, started=T0 + 50, stream_id=11),
        make_call("ExecSync", {"container_id": CID, "cmd": ["cat", "/ready"]}, {}, started=T0 + 60, stream_id=13),
    ]  # fmt: skip
    record(tmp_path / "r.db", calls)
    return tmp_path / "r.db"


def test_problems_by_kind_and_grouped_by_message_shape(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        axis = axis_for(T0, T0 + 60)
        found = read_problems(recording.conn, Selection(), axis)
        viewed = recording.conn.execute("SELECT kind, count(*) FROM problems GROUP BY kind").fetchall()
        assert {k: sum(v) for k, v in found.per_bucket.items() if sum(v)} == dict(viewed)
        assert sorted(found.kinds.values()) == ["grpc_error", "grpc_error", "nonzero_exit", "nonzero_exit", "unfinished"]
        top = found.groups[0]
        # two NotFound answers about different ids are one kind of error
        assert (top.method, top.kind, top.status, top.count) == ("ContainerStatus", "grpc_error", "NOT_FOUND", 2)
        assert top.message.startswith('container "aaaa') and top.first == T0 + 1 and top.last == T0 + 2
        assert len(top.examples) == 2
        assert {(g.method, g.status) for g in found.groups[1:]} == {("GetContainerEvents", "cancelled"),
                                                                    ("ExecSync", "exit 3"), ("ExecSync", "exit 1")}
    finally:
        recording.close()


def test_failing_probes_by_container_with_command_and_readable_stderr(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        found = read_problems(recording.conn, Selection(), axis_for(T0, T0 + 60))
        (probe,) = failed_probes(recording.conn, found, {})
        assert probe["container_id"] == CID and probe["pod"] == "shop/web"  # the view's, from CreateContainer
        assert probe["count"] == 2 and probe["exit_codes"] == [1, 3]
        assert probe["cmd"] == ["cat", "/ready"]
        assert probe["first"] == T0 + 4 and probe["last"] == T0 + 50
        listed = {row[0] for row in recording.conn.execute("SELECT call_id FROM failed_probes")}
        assert set(probe["examples"]) == listed  # the same calls as the failed_probes view
        assert probe["last_stderr"] == "no such file"  # the latest failure's, as text
    finally:
        recording.close()


def test_readable_bytes() -> None:
    assert readable_bytes(base64.b64encode(b"no such file").decode()) == "no such file"
    assert readable_bytes(base64.b64encode(b"no such file").decode()[:10]) == "no suc"  # cut mid-way: its whole quads
    binary = base64.b64encode(b"\xff\xfe\x00").decode()
    assert readable_bytes(binary) == binary  # not UTF-8: left as base64
    assert readable_bytes(None) is None


def test_losses_on_the_axis_and_in_the_window(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "l.db")
    conn.execute("INSERT INTO sessions (id, started_at, started_unix, cri_proxy_version, format_version) "
                 "VALUES (1, ?, ?, 'test', 1)", (utc_text(T0), T0))  # fmt: skip
    for start, lost in ((T0 + 10, 5), (T0 + 500, 7)):
        conn.execute("INSERT INTO losses (session_id, started_at, ended_at, reason, calls_lost) VALUES (1, ?, ?, ?, ?)",
                     (utc_text(start), utc_text(start + 2), "queue full", lost))  # fmt: skip
    conn.close()
    recording = Recording(tmp_path / "l.db")
    try:
        axis = axis_for(T0, T0 + 600)
        everything = read_losses(recording.conn, Selection(), axis)
        assert everything["lost"] == 12 and everything["episode_count"] == 2
        assert everything["per_bucket"][axis.index(T0 + 500)] == 7
        assert everything["episodes"][0] == {"session": 1, "start": T0 + 10, "end": T0 + 12, "reason": "queue full",
                                             "lost": 5}  # fmt: skip
        late = read_losses(recording.conn, Selection(since=T0 + 100), axis)
        assert late["lost"] == 7
        assert read_losses(recording.conn, Selection(session=2), axis)["lost"] == 0
    finally:
        recording.close()
