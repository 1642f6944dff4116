"""Opening recording databases: migrations, refusal of newer ones, file mode, pages, WAL, read-only,
the named queries, and a README that documents every column."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_proxy.model.call import Outcome
from cri_proxy.model.errors import StorageError
from cri_proxy.store import db, sql
from cri_proxy.store.readonly import open_readonly
from tests.conftest import ROOT
from tests.helpers.calls import T0, make_call, record
from tests.helpers.probes import STDERR_7
from tests.helpers.recordings import GOLDEN_DIR

pytestmark = pytest.mark.timeout(30)

NEWEST = len(sql.migrations())


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask of 0, so only our own os.open mode can keep the file private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def tables_and_views(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {name: [row[1] for row in conn.execute(f'PRAGMA table_info("{name}")')] for (name,) in names}


def test_fresh_database(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "calls.db"
    conn = db.open_database(path)
    try:
        assert db.schema_version(conn) == NEWEST
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1000
        names = [r[1] for r in conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")]
        assert names == [m.name for m in sql.migrations()]
        found = tables_and_views(conn)
        for name in ("sessions", "calls", "payloads", "messages", "losses", *sql.view_names()):
            assert name in found
        conn.execute("INSERT INTO sessions (started_at, started_unix, cri_proxy_version, format_version) "
                     "VALUES ('x', 0, '0', 1)")  # fmt: skip
        assert db.integrity_check(conn) == ["ok"]
        for suffix in ("", "-wal", "-shm"):  # the WAL files exist while a connection is open
            mode = stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            assert mode == 0o600, (suffix, oct(mode))
    finally:
        conn.close()


def _version_1(path: Path) -> None:
    """A database as cri-proxy with only migration 0001 wrote it, with one call."""
    first = sql.migrations()[0]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at TEXT NOT NULL)")  # fmt: skip
    conn.execute("BEGIN")
    for statement in db.split_statements(first.sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'initial', '2026-01-01 00:00:00.000')")
    conn.execute("INSERT INTO sessions (id, started_at, started_unix, cri_proxy_version, format_version) "
                 "VALUES (1, '2026-01-01 00:00:00.000', 1767225600, '0.0.9', 1)")  # fmt: skip
    conn.execute(
        "INSERT INTO calls (session_id, conn_id, stream_id, started_at, started_unix, service, method, "
        "path, outcome, request_bytes, response_bytes, request_count, response_count, format_version) "
        "VALUES (1, 1, 1, '2026-01-01 00:00:01.000', 1767225601, 'runtime.v1.RuntimeService', "
        "'Version', '/runtime.v1.RuntimeService/Version', 'completed', 0, 10, 1, 1, 1)"
    )
    conn.execute("COMMIT")
    conn.close()


def test_upgrade_from_version_1_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1(path)
    conn = db.open_database(path)
    try:
        assert db.schema_version(conn) == NEWEST
        assert conn.execute("SELECT method FROM calls").fetchall() == [("Version",)]
        assert conn.execute("SELECT count(*) FROM losses").fetchone() == (0,)
        applied = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in applied] == list(range(1, NEWEST + 1))
        assert db.integrity_check(conn) == ["ok"]
    finally:
        conn.close()
    # and a recorder writes into the upgraded file, next to the old session
    record(path, [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})])
    conn = open_readonly(path)
    assert conn.execute("SELECT count(*), count(DISTINCT session_id) FROM calls").fetchone() == (2, 2)
    conn.close()


def test_migration_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version_1(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE losses (x)")  # makes 0002 fail half-way
    conn.close()
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        db.open_database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'losses_started_at'").fetchall() == []
    conn.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db.open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', 'x')", (NEWEST + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=rf"newer cri-proxy \(schema version {NEWEST + 1}"):
        db.open_database(path)
    with pytest.raises(StorageError, match="newer cri-proxy"):
        open_readonly(path)


def test_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 1000)
    with pytest.raises(db.DatabaseCorrupt, match="not a usable SQLite database"):
        db.open_database(path)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        open_readonly(path)
    with pytest.raises(StorageError, match="no recording database"):
        open_readonly(tmp_path / "absent.db")


def test_the_projects_views_are_recreated_at_open_and_a_users_view_survives(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    db.open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP VIEW errors")
    conn.execute("DROP VIEW slow_calls")
    conn.execute("CREATE VIEW slow_calls AS SELECT 1 AS stale")  # an old version's definition
    conn.execute("CREATE VIEW my_errors AS SELECT call_id, method FROM errors WHERE method LIKE 'Exec%'")
    conn.commit()
    conn.close()
    conn = db.open_database(path)
    views = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'").fetchall())
    columns = [r[1] for r in conn.execute("PRAGMA table_info(slow_calls)")]
    mine = conn.execute("SELECT * FROM my_errors").fetchall()
    conn.close()
    assert set(views) == set(sql.view_names()) | {"my_errors", "calls", "messages"}  # the schema's own (0006, 0010)
    assert "method LIKE 'Exec%'" in views["my_errors"] and mine == []
    assert columns[0] == "call_id"  # this version's slow_calls, not the stale one


def test_readme_documents_every_table_column_and_view(tmp_path: Path) -> None:
    readme = (ROOT / "storage" / "README.md").read_text()
    conn = db.open_database(tmp_path / "calls.db")
    found = tables_and_views(conn)
    conn.close()
    missing = []
    for name, columns in found.items():
        if f"### `{name}`" not in readme:
            missing.append(f"section for {name}")
        section = readme.split(f"### `{name}`", 1)[-1].split("\n### ", 1)[0]
        missing += [f"{name}.{col}" for col in columns if f"`{col}`" not in section]
    assert not missing, f"undocumented in storage/README.md: {missing}"


def test_named_queries_have_headers_and_run(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})])
    queries = sql.queries()
    assert {"pod-startup", "failed-last-hour", "largest-replies", "busiest-methods", "exec-probes"} <= set(queries)
    readme = (ROOT / "storage" / "README.md").read_text()
    conn = open_readonly(path)
    try:
        for name, query in queries.items():
            assert query.description, name
            used = {u for u in re.findall(r"(?<![:\w]):([a-z_]+)", _strip_comments(query.sql))}
            assert used == set(query.params), (name, used, query.params)
            assert f"`{name}`" in readme, name
            values = {p: {"limit": 5, "minutes": 60}.get(p, "x") for p in query.params}
            conn.execute(query.sql, values).fetchall()
    finally:
        conn.close()


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def test_a_checkout_reads_the_top_level_storage_folder() -> None:
    here = Path(db.__file__).resolve().parent
    assert not (here / "storage").is_symlink()  # no link from the package into storage/
    assert sql.storage_dir().resolve() == (ROOT / "storage").resolve()
    assert T0 > 0


def test_failed_probes_and_problems_show_the_failing_exec_probes(probe_recording: Path) -> None:
    conn = open_readonly(probe_recording)
    try:
        probes = conn.execute("SELECT exit_code, cmd, stderr, pod_name, pod_namespace, container_id, "
                              "stderr_base64 FROM failed_probes ORDER BY call_id").fetchall()
        problems = conn.execute("SELECT kind, method, exit_code, status_name FROM problems ORDER BY call_id").fetchall()
        errors = conn.execute("SELECT method FROM errors").fetchall()
    finally:
        conn.close()
    assert [(p[0], json.loads(p[1])) for p in probes] == [(3, ["sh", "-c", "exit 3"]),
                                                          (7, ["sh", "-c", "probe-check; exit 7"])]
    # stderr is valid UTF-8: the JSON holds it as text, so the view reads it without base64
    assert probes[0][2] is None and probes[1][2] == STDERR_7.decode() and probes[1][6] is None
    assert {(p[3], p[4]) for p in probes} == {("web", "shop")} and all(p[5] for p in probes)
    assert problems == [("nonzero_exit", "ExecSync", 3, "OK"), ("nonzero_exit", "ExecSync", 7, "OK"),
                        ("grpc_error", "ContainerStatus", None, "NOT_FOUND")]
    assert errors == [("ContainerStatus",)]  # the probes' calls did not fail: errors keeps its rule


def test_problems_lists_calls_that_never_finished(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {}, None, status=None, duration_ms=None, outcome=Outcome.CANCELLED),
                  make_call("Version", {}, {"version": "0.1.0"})])
    conn = open_readonly(path)
    try:
        got = conn.execute("SELECT kind, outcome, exit_code FROM problems").fetchall()
    finally:
        conn.close()
    assert got == [("unfinished", "cancelled", None)]


def test_migration_5_fills_exit_codes_of_an_older_recording(tmp_path: Path) -> None:
    copy = tmp_path / "v4.db"
    shutil.copy(GOLDEN_DIR / "schema-v4.db", copy)
    conn = db.open_database(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        got = conn.execute(
            "SELECT c.method, c.exit_code, json_extract(p.json, '$.cmd') FROM calls AS c LEFT JOIN messages AS m "
            "ON m.call_id = c.id AND m.direction = 'request' AND m.idx = 0 LEFT JOIN payloads AS p "
            "ON p.id = m.payload_id ORDER BY c.id").fetchall()
        failing = conn.execute("SELECT exit_code, cmd FROM failed_probes").fetchall()
    finally:
        conn.close()
    execs = [(code, json.loads(cmd)) for method, code, cmd in got if method == "ExecSync"]
    assert len(execs) == 4 and sorted(code for code, _ in execs) == [0, 0, 0, 3]
    assert [cmd for code, cmd in execs if code == 3] == [["sh", "-c", "exit 3"]]
    assert {code for method, code, _ in got if method != "ExecSync"} == {None}
    assert failing == [(3, '["sh","-c","exit 3"]')]


def test_migration_6_keeps_every_row_and_a_users_view_answers_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "v5.db"
    shutil.copy(GOLDEN_DIR / "schema-v5.db", copy)
    conn = sqlite3.connect(copy)
    conn.execute("CREATE VIEW my_headers AS SELECT id, request_metadata, trailers FROM calls")
    conn.commit()
    before = conn.execute("SELECT * FROM calls ORDER BY id")
    columns = [d[0] for d in before.description]
    calls = before.fetchall()
    mine = conn.execute("SELECT * FROM my_headers ORDER BY id").fetchall()
    bodies = conn.execute("SELECT call_id, direction, idx, data, json FROM call_messages ORDER BY 1, 2, 3").fetchall()
    conn.close()
    new = make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"}, started=T0)
    new.request_metadata = [("user-agent", "kubelet"), ("grpc-timeout", "119999m")]
    record(copy, [new])  # opened for writing: migrated
    conn = sqlite3.connect(copy)
    try:
        assert db.schema_version(conn) == len(sql.migrations())
        after = conn.execute("SELECT * FROM calls ORDER BY id")
        assert [d[0] for d in after.description] == [*columns, "client_id"]  # 0008 adds who made it
        got = after.fetchall()
        assert [row[:-1] for row in got[:len(calls)]] == calls
        assert {row[-1] for row in got[:len(calls)]} == {None}  # not known for calls made before
        assert conn.execute("SELECT * FROM my_headers ORDER BY id").fetchall() == [
            *mine, (got[-1][0], '[["user-agent", "kubelet"], ["grpc-timeout", "119999m"]]', '[["grpc-status", "0"]]')]
        assert conn.execute("SELECT call_id, direction, idx, data, json FROM call_messages "
                            "WHERE call_id <= ? ORDER BY 1, 2, 3", (calls[-1][0],)).fetchall() == bodies
    finally:
        conn.close()


def test_queries_of_the_calls_view_use_the_indexes_of_call_rows(tmp_path: Path) -> None:
    conn = db.open_database(tmp_path / "calls.db")
    try:
        plans = {query: " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
                 for query in ("SELECT * FROM calls WHERE pod_namespace = 'a' AND pod_name = 'b'",
                               "SELECT * FROM calls WHERE started_unix > 5 ORDER BY started_unix, id",
                               "SELECT id, trailers FROM calls WHERE container_id = 'c'")}
    finally:
        conn.close()
    assert [("USING INDEX" in plan, "TEMP B-TREE" in plan) for plan in plans.values()] == [(True, False)] * 3, plans


def test_failed_last_hour_names_the_failing_probes(probe_recording: Path) -> None:
    conn = open_readonly(probe_recording)
    try:
        cursor = conn.execute(sql.queries()["failed-last-hour"].sql)
        columns = [c[0] for c in cursor.description]
        got = sorted((row[columns.index("kind")], row[columns.index("exit_code")]) for row in cursor.fetchall())
    finally:
        conn.close()
    assert got == [("grpc_error", None), ("nonzero_exit", 3), ("nonzero_exit", 7)]


def test_exec_probes_counts_the_non_zero_exits(probe_recording: Path) -> None:
    conn = open_readonly(probe_recording)
    try:
        cursor = conn.execute(sql.queries()["exec-probes"].sql, {"minutes": "60"})
        columns = [c[0] for c in cursor.description]
        got = {row[columns.index("cmd")]: row[columns.index("nonzero_exits")] for row in cursor.fetchall()}
    finally:
        conn.close()
    assert got == {'["sh","-c","exit 0"]': 0, '["sh","-c","exit 3"]': 1, '["sh","-c","probe-check; exit 7"]': 1}


def test_older_recordings_keep_base64_bytes_and_no_markers() -> None:
    """JSON written before the `_bytes` markers holds every bytes field as base64: no marker
    means base64, so a reader tells the two forms apart (storage/README.md, "The JSON")."""
    conn = open_readonly(GOLDEN_DIR / "schema-v5.db")
    try:
        envs = conn.execute("SELECT json_extract(e.value, '$.value'), json_extract(e.value, '$._bytes') "
                            "FROM payloads AS p, json_each(p.json, '$.config.envs') AS e").fetchall()
        stdout = conn.execute("SELECT DISTINCT json_extract(p.json, '$.stdout'), json_extract(p.json, '$._bytes') "
                              "FROM call_messages AS p WHERE method = 'ExecSync' AND direction = 'response' "
                              "AND json_extract(p.json, '$.stdout') IS NOT NULL").fetchall()
    finally:
        conn.close()
    assert envs and {(base64.b64decode(value), mark) for value, mark in envs} == {(b"[redacted]", None)}
    assert [(base64.b64decode(text), mark) for text, mark in stdout] == [(b"ok\n", None)]
