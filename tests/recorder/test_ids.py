"""recorder/ids.py restated in SQL: migration 0004 fills the ids the writer left NULL for
big calls, and must give what `call_ids` gives. (call_ids' own cases: tests/messages.)"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

from typing import Any

import pytest

from cri_proxy.messages.decode import decode_message
from cri_proxy.model.call import RecordedCall
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.pipeline import default_pipeline
from cri_proxy.messages.decode import JsonDecoder
from cri_proxy.recorder.ids import ID_KEYS, MAX_PATHS, NO_IDS, IdsStage
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.store import db, sql
from tests.helpers.calls import POD, lifecycle_calls, make_call, record, rows

pytestmark = pytest.mark.timeout(60)


def migration_0004() -> str:
    [migration] = [m for m in sql.migrations() if m.version == 4]
    assert migration.name == "call_ids"
    return migration.sql


def big_calls() -> list[RecordedCall]:
    env = [{"key": f"SETTING_{i:02d}", "value": base64.b64encode(b"x" * 40).decode()} for i in range(80)]
    info = {"info": "{" + ", ".join(f'"k{i}": "{"v" * 50}"' for i in range(80)) + "}"}
    return [
        make_call("CreateContainer", {"pod_sandbox_id": "p9", "sandbox_config": POD,
                                      "config": {"image": {"image": "app:2"}, "envs": env}}, {"container_id": "c9"}),
        make_call("PodSandboxStatus", {"pod_sandbox_id": "p9", "verbose": True},
                  {"status": {"id": "p9", "metadata": {"name": "big", "namespace": "ns"}}, "info": info}),
        make_call("ImageStatus", {"image": {"image": "app:2"}}, {}),
        make_call("PullImage", {"image": {"image": "app:2"}}, None, status=2),
        make_call("ListPodSandbox", {"filter": {"id": "p9"}}, {}),
        make_call("RunPodSandbox", {"config": {"metadata": {"name": "", "namespace": "ns"}}}, {"pod_sandbox_id": ""}),
    ]


def _ids(path: Path) -> list[tuple[object, ...]]:
    return rows(path, f"SELECT method, {', '.join(ID_KEYS)} FROM calls ORDER BY id")


def test_the_migration_gives_what_call_ids_gives(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [*lifecycle_calls(), *big_calls()])
    expected = _ids(path)
    assert ("CreateContainer", "p9", "c9", "app:2", "web", "shop") in expected
    assert ("PodSandboxStatus", "p9", None, None, "big", "ns") in expected
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"UPDATE calls SET {', '.join(f'{k} = NULL' for k in ID_KEYS)}")  # as the old writer left them
        conn.execute("UPDATE calls SET pod_name = 'kept' WHERE method = 'StartContainer'")  # a value already there
        conn.execute("BEGIN IMMEDIATE")
        for statement in db.split_statements(migration_0004()):
            conn.execute(statement)
        conn.execute("COMMIT")
        assert conn.execute("SELECT name FROM sqlite_temp_master").fetchall() == []  # it cleans up
    finally:
        conn.close()
    after = _ids(path)
    assert [row for row in after if row[0] != "StartContainer"] == [row for row in expected if row[0] != "StartContainer"]
    assert {row[4] for row in after if row[0] == "StartContainer"} == {"kept"}


def exec_calls() -> list[RecordedCall]:
    """ExecSync answered with exit codes 3, 0 (left out of the JSON) and 7 (v1alpha2), not
    answered, answered with bytes that do not decode; and a call that is not ExecSync."""
    return [
        make_call("ExecSync", {"container_id": "c1", "cmd": ["sh", "-c", "exit 3"]}, {"exit_code": 3}),
        make_call("ExecSync", {"container_id": "c1", "cmd": ["true"]}, {"stdout": "b2sK"}),
        make_call("ExecSync", {"container_id": "c1", "cmd": ["false"]}, {"exit_code": 7}, version="v1alpha2"),
        make_call("ExecSync", {"container_id": "c1", "cmd": ["sleep", "9"]}, None, status=4),
        make_call("ExecSync", {"container_id": "c1"}, b"\xff\xff\xff"),
        make_call("ContainerStatus", {"container_id": "c1"}, {}),
    ]


def test_migration_5_gives_what_exec_exit_code_gives(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, exec_calls())
    expected = rows(path, "SELECT method, exit_code FROM calls ORDER BY id")
    assert expected == [("ExecSync", 3), ("ExecSync", 0), ("ExecSync", 7), ("ExecSync", None),
                        ("ExecSync", None), ("ContainerStatus", None)]
    [migration] = [m for m in sql.migrations() if m.version == 5]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for name in sql.view_names():  # the views read exit_code, so it cannot go while they stand
            conn.execute(f"DROP VIEW {name}")
        # As a version-4 file has it: a `calls` table (0006 made it a view) without exit_code.
        for name in ("calls_insert", "calls_update", "calls_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TRIGGER call_minutes_forget")  # 0007's trigger reads exit_code too
        # The view's rows as a table (schema 12 split them into thin rows and shapes), its
        # route's text and metadata in each row as before 0006 and 0009.
        conn.execute("CREATE TABLE old_calls AS SELECT * FROM calls")
        conn.execute("DROP VIEW calls")
        conn.execute("ALTER TABLE old_calls RENAME TO calls")
        conn.execute("ALTER TABLE calls DROP COLUMN exit_code")
        conn.execute("BEGIN IMMEDIATE")
        for statement in db.split_statements(migration.sql):
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()
    assert rows(path, "SELECT method, exit_code FROM calls ORDER BY id") == expected


def test_only_messages_that_can_name_an_id_are_decoded_for_it() -> None:
    """A Version call's messages hold no id: the ids peer does not decode them (the writer
    still does, once per distinct body, for the stored JSON); a ContainerStatus request does."""
    asked: list[tuple[str, str]] = []

    def decode(path: str, direction: str, data: bytes) -> dict[str, Any] | None:
        asked.append((path.rsplit("/", 1)[1], direction))
        return decode_message(path, direction, data)

    pipeline = default_pipeline(RecorderOptions(), decode=decode)
    version, status = (pipeline.admit(make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})),
                       pipeline.admit(make_call("ContainerStatus", {"container_id": "c1"}, {})))
    assert version is not None and status is not None
    ready, dropped = pipeline.prepare_batch([version, status])
    assert dropped == 0 and asked == [("ContainerStatus", "request")]
    assert ready[1].ids["container_id"] == "c1" and ready[0].ids == dict.fromkeys(ID_KEYS)


def test_what_a_path_can_name_is_worked_out_once_per_path_and_boundedly() -> None:
    """The stage keeps, per path, which messages it reads (at most MAX_PATHS paths: clients
    choose them); a path that names nothing gets the shared all-None ids, and after the
    plans were forgotten a ContainerStatus still gives its container."""
    stage = IdsStage()
    for i in range(MAX_PATHS + 3):
        item = PreparedCall.of(make_call(f"M{i}", b"", b""))  # a CRI path no proto defines: nothing read
        assert stage.process(item).ids == dict.fromkeys(ID_KEYS)
    version = stage.process(PreparedCall.of(make_call("Version", {"version": "0.1.0"}, {})))
    assert version.ids is NO_IDS and version.exit_code is None
    status = PreparedCall.of(make_call("ContainerStatus", {"container_id": "c1"}, {}))
    status.decoder = JsonDecoder()
    assert stage.process(status).ids["container_id"] == "c1"
    exec_sync = PreparedCall.of(make_call("ExecSync", {"container_id": "c2"}, {"exit_code": 3}))
    exec_sync.decoder = JsonDecoder()
    done = stage.process(exec_sync)
    assert done.ids["container_id"] == "c2" and done.exit_code == 3
    assert NO_IDS == dict.fromkeys(ID_KEYS)  # never written to
