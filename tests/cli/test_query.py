"""`cri-proxy query` through the real command line, against recordings the recorder wrote:
every format, --schema, named queries, SQL from stdin and files, one-line errors, and the
database left exactly as it was (stopped or live). Also the helpers the other query tests use.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cri_proxy.query import DB_ENV, DEFAULT_DB
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import sql
from tests.conftest import ROOT
from tests.helpers.calls import (
    make_call,
    record,
    rows,
    wait_for,
)
from tests.helpers.cli import (
    cli_argv,
    cli_env,
    incident_calls,
    one_error_line,
    run_cli,
    snapshot,
)

pytestmark = pytest.mark.timeout(60)















@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("query") / "calls.db"
    record(path, incident_calls())
    return path


# -- formats ------------------------------------------------------------------------------------

LONG_QUERY = "SELECT id, method, duration_ms, request_metadata FROM calls WHERE method = 'RunPodSandbox' ORDER BY id"


def test_table_is_aligned_and_cuts_long_cells(recording: Path) -> None:
    result = run_cli("query", "--db", str(recording), LONG_QUERY)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "method", "duration_ms", "request_metadata"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 4  # header, rule, two RunPodSandbox calls
    for line in lines[2:]:
        assert line.endswith("…") and len(line) <= len(lines[1]) + 1
        assert "30000.0" in line or "120.0" in line
    # numbers right-aligned under their header, text left-aligned
    assert lines[2].index("RunPodSandbox") == lines[0].index("method")
    assert lines[2].index("30000.0") + len("30000.0") == lines[0].index("duration_ms") + len("duration_ms")


def test_json_jsonl_and_csv_carry_full_values(recording: Path) -> None:
    full = rows(recording, LONG_QUERY)
    as_json = json.loads(run_cli("query", "--db", str(recording), "--format", "json", LONG_QUERY).stdout)
    jsonl = run_cli("query", "--db", str(recording), "--format", "jsonl", LONG_QUERY).stdout.splitlines()
    as_csv = list(csv.reader(io.StringIO(run_cli("query", "--db", str(recording), "--format", "csv", LONG_QUERY).stdout)))
    keys = ["id", "method", "duration_ms", "request_metadata"]
    # the metadata column is JSON text in SQLite: json and jsonl nest it as JSON (issue 13.6)
    assert as_json == [dict(zip(keys, (*row[:3], json.loads(row[3])))) for row in full]
    assert all(isinstance(obj["request_metadata"], list) for obj in as_json)
    assert [json.loads(line) for line in jsonl] == as_json
    assert as_csv[0] == keys
    assert as_csv[1:] == [[str(v) for v in row] for row in full]
    assert "…" not in json.dumps(as_json)


def test_binary_and_null_values(recording: Path) -> None:
    query = "SELECT data, NULL AS missing FROM payloads WHERE size > 100 ORDER BY id LIMIT 1"
    ((data, _),) = rows(recording, query)
    table = run_cli("query", "--db", str(recording), query).stdout.splitlines()
    assert table[2].strip() == f"<{len(data)} bytes>"
    (obj,) = json.loads(run_cli("query", "--db", str(recording), "--format", "json", query).stdout)
    assert obj["missing"] is None and obj["data"]["$base64"] is True
    assert base64.b64decode(obj["data"]["encoded"]) == data
    lines = run_cli("query", "--db", str(recording), "--format", "csv", query).stdout.splitlines()
    assert lines == ["data,missing", base64.b64encode(data).decode() + ","]


def test_empty_result_prints_the_header(recording: Path) -> None:
    query = "SELECT id, method FROM calls WHERE 0"
    assert run_cli("query", "--db", str(recording), query).stdout.splitlines() == ["id  method", "--  ------"]
    assert run_cli("query", "--db", str(recording), "--format", "json", query).stdout == "[]\n"
    assert run_cli("query", "--db", str(recording), "--format", "jsonl", query).stdout == ""
    assert run_cli("query", "--db", str(recording), "--format", "csv", query).stdout == "id,method\n"


def test_unknown_format_is_a_usage_error(recording: Path) -> None:
    result = run_cli("query", "--db", str(recording), "--format", "xml", "SELECT 1")
    assert result.returncode == 2 and "--format" in result.stderr and result.stdout == ""


# -- schema and named queries -----------------------------------------------------------------


def test_schema_lists_tables_and_views_with_columns(recording: Path) -> None:
    got = json.loads(run_cli("query", "--db", str(recording), "--schema", "--format", "json").stdout)
    objects = {(r["object"], r["kind"]) for r in got}
    for table in ("sessions", "call_rows", "payloads", "call_shapes", "shape_messages", "losses", "clients", "schema_migrations",
                  "metadata_sets"):
        assert (table, "table") in objects
    assert ("calls", "view") in objects  # over call_rows since schema 6, with the columns it had
    assert ("messages", "view") in objects  # a view since schema 10 (over call_rows and shape_messages since 12), likewise
    for view in sql.view_names():
        assert (view, "view") in objects
    calls = {r["column"]: r["type"] for r in got if r["object"] == "calls"}
    assert calls["pod_name"] == "TEXT" and calls["started_unix"] == "REAL" and len(calls) == 36  # 0006 added client_id
    # Expressions of the view since schema 12 (duration_us / 1000.0; the text derived from
    # started_unix): SQLite declares no type for a view's expression column.
    assert calls["duration_ms"] == "" and calls["started_at"] == ""
    stats_cols = [r["column"] for r in got if r["object"] == "method_stats"]
    assert stats_cols[:3] == ["service", "method", "calls"] and "p99_ms" in stats_cols
    kinds = [r["kind"] for r in got]
    assert kinds == sorted(kinds, key=lambda k: k == "view")  # tables first
    table = run_cli("query", "--db", str(recording), "--schema").stdout
    assert "container_lifecycle" in table and "create_to_started_ms" in table


def test_named_query_with_params(recording: Path) -> None:
    result = run_cli("query", "--db", str(recording), "--named", "pod-startup",
                     "--param", "pod_name=web", "--param", "pod_namespace=shop", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert [r["method"] for r in got][:5] == [
        "RunPodSandbox", "RunPodSandbox", "PullImage", "CreateContainer", "StartContainer"]  # fmt: skip
    assert got[1]["gap_ms"] == 10_000.0 and got[0]["status"] == "UNKNOWN"
    table = run_cli("query", "--db", str(recording), "--named", "largest-replies", "--param", "limit=2")
    assert len(table.stdout.splitlines()) == 4 and "ListContainers" in table.stdout


def test_named_query_parameter_errors(recording: Path) -> None:
    line = one_error_line(run_cli("query", "--db", str(recording), "--named", "pod-startup", "--param", "pod_name=web"))
    assert "--param pod_namespace=" in line
    line = one_error_line(run_cli("query", "--db", str(recording), "--named", "largest-replies",
                                  "--param", "limit=2", "--param", "pod=web"))  # fmt: skip
    assert "no parameter pod" in line and "limit" in line
    line = one_error_line(run_cli("query", "--db", str(recording), "--named", "nope"))
    assert "no named query 'nope'" in line and "pod-startup" in line
    assert "NAME=VALUE" in one_error_line(run_cli("query", "--db", str(recording), "--param", "x", "SELECT 1"))


def test_list_named_shows_the_header_comments() -> None:
    text = run_cli("query", "--list-named").stdout  # needs no database
    assert max(len(line) for line in text.splitlines()) <= 100
    queries = sql.queries()
    assert set(queries) >= {"pod-startup", "failed-last-hour", "largest-replies", "busiest-methods", "exec-probes"}
    for q in queries.values():
        assert f"\n{q.name}\n" in "\n" + text
        assert q.description in " ".join(text.split())  # wrapped for the terminal
        for param, meaning in q.params.items():
            assert f"--param {param}=..." in text and f"{param}: {meaning}" in text
    got = json.loads(run_cli("query", "--list-named", "--format", "json").stdout)
    assert {r["name"]: r["description"] for r in got} == {q.name: q.description for q in queries.values()}


def test_params_work_with_ad_hoc_sql(recording: Path) -> None:
    result = run_cli("query", "--db", str(recording), "--format", "jsonl", "--param", "m=Version",
                     "SELECT COUNT(*) AS n FROM calls WHERE method = :m")  # fmt: skip
    assert json.loads(result.stdout) == {"n": 1}


# -- where the SQL comes from -----------------------------------------------------------------


def test_sql_from_stdin_and_file(recording: Path, tmp_path: Path) -> None:
    query = "SELECT COUNT(*) AS n FROM calls\n"
    (expected,) = rows(recording, query)
    for args, stdin in ((["-"], query), ([], query)):  # '-', or no SQL with stdin not a terminal
        result = run_cli("query", "--db", str(recording), "--format", "csv", *args, input=stdin)
        assert result.stdout == f"n\n{expected[0]}\n", result.stderr
    path = tmp_path / "q.sql"
    path.write_text("-- how many calls\n" + query + ";\n")
    assert run_cli("query", "--db", str(recording), "--format", "csv", "--file", str(path)).stdout == f"n\n{expected[0]}\n"
    assert "cannot read --file" in one_error_line(run_cli("query", "--db", str(recording), "--file", str(tmp_path / "none")))


def test_no_sql_is_one_line(recording: Path) -> None:
    assert "no SQL given" in one_error_line(run_cli("query", "--db", str(recording)))  # stdin is empty
    assert "only one of" in one_error_line(run_cli("query", "--db", str(recording), "--schema", "SELECT 1"))


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("statement, message", [
    ("SELEC 1", 'near "SELEC": syntax error'),
    ("SELECT * FROM nope", "no such table: nope"),
    ("DELETE FROM calls", "attempt to write a readonly database"),
    ("UPDATE sessions SET calls_lost = 0", "attempt to write a readonly database"),
    ("CREATE TABLE t (x)", "attempt to write a readonly database"),
    ("DROP VIEW errors", "attempt to write a readonly database"),
    ("PRAGMA user_version = 7", "attempt to write a readonly database"),
    ("ATTACH 'other.db' AS o", "not authorized"),
    ("VACUUM INTO 'copy.db'", "authorization denied"),
    ("PRAGMA query_only = 0", "not authorized"),
    ("SELECT 1; SELECT 2", "You can only execute one statement at a time."),
    ("SELECT :missing", "You did not supply a value for binding parameter :missing."),
])  # fmt: skip
def test_bad_query_is_one_line_and_exit_2(recording: Path, statement: str, message: str) -> None:
    before = snapshot(recording.parent)
    line = one_error_line(run_cli("query", "--db", str(recording), statement))
    assert line == f"cri-proxy: error: query failed: {message}"
    assert snapshot(recording.parent) == before  # nothing created next to it either
    assert not (ROOT / "other.db").exists() and not (ROOT / "copy.db").exists()


def test_missing_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    line = one_error_line(run_cli("query", "--db", str(path), "SELECT 1"))
    assert line == f"cri-proxy: error: no recording database at {path} (give --db or set {DB_ENV})"
    assert list(tmp_path.iterdir()) == []  # not created
    for command in (["stats"], ["tail"]):
        assert "no recording database" in one_error_line(run_cli(*command, "--db", str(path)))
    assert list(tmp_path.iterdir()) == []


def test_not_a_recording_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    assert "is not a usable SQLite database" in one_error_line(run_cli("query", "--db", str(junk), "SELECT 1"))
    other = tmp_path / "other.db"
    subprocess.run(["sqlite3", str(other), "CREATE TABLE t (x)"], check=False, capture_output=True)
    if other.exists():
        assert "not a cri-proxy recording" in one_error_line(run_cli("query", "--db", str(other), "SELECT 1"))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as nobody")
def test_unreadable_database_is_one_line(recording: Path) -> None:
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-c", "import cri_proxy.cli.query"], cwd=ROOT,
                           capture_output=True, env=cli_env(), timeout=30)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run this checkout's Python (a checkout under a private folder)")
    argv = [*nobody, *cli_argv("query", "--db", str(recording), "SELECT 1")]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=cli_env(), timeout=30)
    assert one_error_line(result) == (f"cri-proxy: error: cannot read {recording}: permission denied "
                                      "(the proxy makes it mode 0600: run as its owner)")  # fmt: skip


def test_default_database_comes_from_the_environment(recording: Path) -> None:
    assert DEFAULT_DB == "/var/lib/cri-proxy/calls.db" and DB_ENV == "CRI_PROXY_DB"
    result = run_cli("query", "--format", "csv", "SELECT COUNT(*) AS n FROM sessions",
                     env=cli_env(CRI_PROXY_DB=str(recording)))  # fmt: skip
    assert result.stdout == "n\n1\n", result.stderr
    if not Path(DEFAULT_DB).exists():
        assert DEFAULT_DB in one_error_line(run_cli("query", "SELECT 1"))


# -- the database is never changed ----------------------------------------------------------------


def test_stopped_recording_is_not_modified(tmp_path: Path) -> None:
    """A cleanly stopped recording has no -wal: it is read immutable, and no -wal or -shm
    appears (plain mode=ro would leave an empty -wal and a 32 KiB -shm behind)."""
    path = tmp_path / "calls.db"
    record(path, incident_calls())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]
    before = snapshot(tmp_path)
    time.sleep(0.05)  # a write now would show in mtime_ns
    for args in (["SELECT COUNT(*) FROM call_messages"], ["SELECT * FROM method_stats"], ["--schema"],
                 ["DELETE FROM calls"], ["--named", "failed-last-hour"]):  # fmt: skip
        run_cli("query", "--db", str(path), *args)
    run_cli("stats", "--db", str(path))
    assert snapshot(tmp_path) == before


def test_live_recording_is_read_and_not_modified(tmp_path: Path) -> None:
    """While the proxy writes, the reader shares its -wal and -shm: it sees the latest batch
    and changes neither the database nor the -wal (a reader does mark its place in the -shm
    index, as every WAL reader does)."""
    path = tmp_path / "calls.db"
    recorder = Recorder(path)
    recorder.start()
    try:
        for call in incident_calls():
            recorder.submit(call)
        wait_for(lambda: recorder.stats.recorded == len(incident_calls()) and recorder.stats.queued == 0)
        time.sleep(0.3)  # let the writer finish its batch's session update
        before = snapshot(tmp_path, skip=("calls.db-shm",))
        assert set(before) == {"calls.db", "calls.db-wal"}
        result = run_cli("query", "--db", str(path), "--format", "csv", "SELECT COUNT(*) AS n FROM calls")
        assert result.stdout == f"n\n{len(incident_calls())}\n", result.stderr
        one_error_line(run_cli("query", "--db", str(path), "DELETE FROM calls"))
        assert snapshot(tmp_path, skip=("calls.db-shm",)) == before
        recorder.submit(make_call("Version", {"version": "v1"}, {"runtime_name": "containerd"}))
        wait_for(lambda: recorder.stats.recorded == len(incident_calls()) + 1)
        again = run_cli("query", "--db", str(path), "--format", "csv", "SELECT COUNT(*) AS n FROM calls")
        assert again.stdout == f"n\n{len(incident_calls()) + 1}\n"
    finally:
        recorder.close()
    assert rows(path, "SELECT COUNT(*) FROM calls") == [(len(incident_calls()) + 1,)]
