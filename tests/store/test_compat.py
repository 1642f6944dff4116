"""Older recordings read as the newest schema, without being written: the golden recording
of every schema version (tests/data/recordings/) through query, stats, tail, every view and
named query, replay and serve; the files stay byte-identical and gain no -wal or -shm."""

from __future__ import annotations

import json
import pathlib
import re
import sqlite3
from collections.abc import Iterator

import grpc
import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.pb.runtime.v1 import api_pb2 as v1
from cri_proxy.pb.runtime.v1 import api_pb2_grpc as v1_grpc
from cri_proxy.query import sqlrun
from cri_proxy.query.stats import compute
from cri_proxy.query.tail import Filters, first_rows, format_line
from cri_proxy.replay.results import Verdict
from cri_proxy.replay.runner import ReplayOptions, run_replay
from cri_proxy.replay.serve import ServeOptions, start_serve
from cri_proxy.store import compat, db, sql
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.cli import run_cli
from tests.helpers.recordings import GOLDEN, file_sha256, golden_sums

pytestmark = pytest.mark.timeout(60)
PARAMS = {"minutes": "100000000", "limit": "5", "pod_name": "web-0", "pod_namespace": "demo"}


def _version(path: pathlib.Path) -> int:
    return int(re.findall(r"\d+", path.name)[-1])


@pytest.fixture(params=GOLDEN, ids=lambda p: p.stem)
def golden(request: pytest.FixtureRequest) -> Iterator[pathlib.Path]:
    """A golden recording, read in place; afterwards it must be exactly as frozen."""
    path: pathlib.Path = request.param
    assert file_sha256(path) == golden_sums()[path.name]
    yield path
    assert file_sha256(path) == golden_sums()[path.name], f"{path.name} was changed"
    assert not pathlib.Path(f"{path}-wal").exists() and not pathlib.Path(f"{path}-shm").exists()


def test_there_is_a_golden_recording_and_a_compat_step_for_every_schema_version() -> None:
    newest = len(sql.migrations())
    assert [_version(p) for p in GOLDEN] == list(range(1, newest + 1))
    assert sorted(compat.STEPS) == list(range(1, newest))
    for path in GOLDEN:
        rec = Recording(path)
        try:
            assert db.schema_version(rec.conn) == _version(path)
        finally:
            rec.close()


def test_views_named_queries_and_sql_work_on_every_version(golden: pathlib.Path) -> None:
    rec = Recording(golden)
    try:
        calls = rec.conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        assert calls > 20
        for name in sql.view_names():
            rec.conn.execute(f"SELECT * FROM {name}").fetchall()
        assert rec.conn.execute("SELECT count(*) FROM losses").fetchone()[0] == 0
        assert sum(r[2] for r in rec.conn.execute("SELECT * FROM method_stats")) == calls
        pods = rec.conn.execute("SELECT pod_name, stop_status, remove_status FROM pod_lifecycle").fetchall()
        decoded = _version(golden) > 1  # version 1's recorder stored bytes only: no JSON, no ids
        assert (("web-0", "OK", "OK") in pods) == decoded
        for name, query in sql.queries().items():
            columns, rows = sqlrun.run_named(rec.conn, name, {p: PARAMS[p] for p in query.params})
            assert columns and isinstance(list(rows), list), name
        startup = list(sqlrun.run_named(rec.conn, "pod-startup", {"pod_name": "web-0", "pod_namespace": "demo"})[1])
        assert any(row[2] == "RunPodSandbox" for row in startup) == decoded
        schema = {(obj, col) for obj, _kind, col, *_ in sqlrun.schema_rows(rec.conn)}
        assert ("losses", "calls_lost") in schema and ("errors", "call_id") in schema
    finally:
        rec.close()


def test_stats_query_and_tail_commands_on_every_version(golden: pathlib.Path) -> None:
    stats = run_cli("stats", "--db", str(golden), "--format", "json")
    assert stats.returncode == 0, stats.stderr
    body = json.loads(stats.stdout)
    assert body["methods"] and body["losses"] == [] and [s["session"] for s in body["sessions"]] == [1]
    named = run_cli("query", "--db", str(golden), "--named", "largest-replies", "--param", "limit=3", "--format", "json")
    assert named.returncode == 0 and len(json.loads(named.stdout)) == 3, named.stderr
    rec = Recording(golden)
    try:
        assert compute(rec.conn, session=1).methods == compute(rec.conn).methods
        _top, shown = first_rows(rec, Filters(), last=5)
        lines = [format_line(c) for c in shown]
    finally:
        rec.close()
    assert len(lines) == 5 and "v1alpha2.RuntimeService/Version" in lines[-1]


def test_the_reader_gives_every_call_with_its_messages(golden: pathlib.Path) -> None:
    rec = Recording(golden)
    try:
        calls = load_calls(rec.conn, Selection())
        count = rec.conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        rec.close()
    assert len(calls) == count
    assert all(c.call.format_version == 1 and c.requests for c in calls)
    assert [c.started_unix for c in calls] == sorted(c.started_unix for c in calls)


async def test_replay_of_every_version_matches_a_fresh_runtime(sock_dir: pathlib.Path, golden: pathlib.Path) -> None:
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        result = await run_replay(ReplayOptions(str(golden), target.address, allow_mutations=True), lambda _l: None)
    finally:
        await target.stop(0)
    bad = [(r.call_id, r.method, r.reason) for r in result.results if r.verdict not in (Verdict.MATCHED, Verdict.SKIPPED)]
    assert bad == [] and result.exit_code == 0 and result.db_out is None
    assert sum(r.verdict is Verdict.MATCHED for r in result.results) > 20


async def test_serve_answers_from_every_version(sock_dir: pathlib.Path, golden: pathlib.Path) -> None:
    served = await start_serve(ServeOptions(str(golden), f"unix://{sock_dir}/s.sock"))
    try:
        async with grpc.aio.insecure_channel(served.address) as channel:
            reply = await v1_grpc.RuntimeServiceStub(channel).Version(v1.VersionRequest())
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await v1_grpc.RuntimeServiceStub(channel).ContainerStatus(
                    v1.ContainerStatusRequest(container_id="0" * 64))
    finally:
        await served.stop(0)
    assert reply.runtime_name
    assert missing.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED)


def test_a_file_whose_views_were_dropped_reads_with_this_versions_views(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "calls.db"
    path.write_bytes(GOLDEN[-1].read_bytes())
    conn = sqlite3.connect(path)
    conn.execute("DROP VIEW errors")
    conn.commit()
    conn.close()
    before = file_sha256(path)
    rec = Recording(path)
    try:
        assert rec.conn.execute("SELECT count(*) FROM errors").fetchone()[0] >= 1
        temp = rec.conn.execute("SELECT name FROM temp.sqlite_master WHERE type = 'view'").fetchall()
    finally:
        rec.close()
    assert ("errors",) in temp and file_sha256(path) == before


def _exit_codes(conn: sqlite3.Connection) -> list[tuple[int, str, int | None]]:
    return conn.execute("SELECT id, method, exit_code FROM calls ORDER BY id").fetchall()


def test_exit_codes_read_from_an_older_file_are_what_the_migration_stores(
    golden: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    rec = Recording(golden)  # read-only: older files get calls.exit_code from compat's TEMP view
    try:
        read = _exit_codes(rec.conn)
        failing = rec.conn.execute("SELECT exit_code FROM failed_probes").fetchall()
        tail = [format_line(c) for c in first_rows(rec, Filters(method_glob="ExecSync"), last=10)[1]]
    finally:
        rec.close()
    copy = tmp_path / golden.name
    copy.write_bytes(golden.read_bytes())
    conn = db.open_database(copy)
    try:
        assert _exit_codes(conn) == read
    finally:
        conn.close()
    if _version(golden) == 1:  # make_v1.py stored no JSON: nothing says how its probes exited
        assert failing == [] and {code for _id, method, code in read if method == "ExecSync"} == {None}
    else:  # the demo's failing probe (`sh -c "exit 3"`) and its passing ones
        assert failing == [(3,)] and sum(" OK exit=3 " in line for line in tail) == 1 and len(tail) >= 2
    assert {code for _id, method, code in read if method != "ExecSync"} == {None}
