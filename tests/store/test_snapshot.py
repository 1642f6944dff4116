"""Snapshots of a recording: consistent while the recorder writes, cut to a window, always a
valid recording of the current schema, the source left as it was."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from cri_proxy.model.errors import StorageError
from cri_proxy.recorder import packing
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.store import db, sql
from cri_proxy.store.reader import load_calls
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from cri_proxy.store.snapshot import snapshot
from tests.helpers.calls import T0, make_call, record, rows, stats_reply, version_call, wait_for
from tests.helpers.recordings import GOLDEN, file_sha256

pytestmark = pytest.mark.timeout(60)


def _ids(path: Path) -> list[int]:
    return [r[0] for r in rows(path, "SELECT id FROM calls ORDER BY id")]


def _valid(path: Path) -> None:
    """A recording of the current schema that the read side opens, with nothing beside it."""
    rec = Recording(path)
    try:
        assert db.schema_version(rec.conn) == len(sql.migrations())
        assert db.integrity_check(rec.conn) == ["ok"]
        for name in sql.view_names():
            rec.conn.execute(f"SELECT * FROM {name}").fetchall()
    finally:
        rec.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not any(Path(f"{path}{side}").exists() for side in ("-wal", "-shm", ".part"))


def test_a_snapshot_taken_while_calls_flow_holds_every_call_recorded_before_it(tmp_path: Path) -> None:
    src, dest = tmp_path / "calls.db", tmp_path / "copy.db"
    recorder = Recorder(src)
    recorder.start()
    stop = threading.Event()

    def flow() -> None:
        i = 0
        while not stop.is_set():
            recorder.submit(version_call(i))
            i += 1
            if i % 50 == 0:
                stop.wait(0.01)

    writer = threading.Thread(target=flow)
    writer.start()
    try:
        wait_for(lambda: len(_ids(src)) >= 300)
        committed = _ids(src)  # what a reader saw committed before the snapshot began
        result = snapshot(src, dest)
        wait_for(lambda: len(_ids(src)) > result.calls)  # calls kept flowing meanwhile
    finally:
        stop.set()
        writer.join(10)
        recorder.close()
    copied = _ids(dest)
    assert set(committed) <= set(copied) and result.calls == len(copied) >= len(committed)
    assert copied == list(range(1, len(copied) + 1))  # a prefix of the recording: consistent
    assert result.calls_left_out == 0 and result.sessions == 1
    _valid(dest)


def test_the_window_keeps_one_sessions_calls_between_two_times(tmp_path: Path) -> None:
    src, dest = tmp_path / "calls.db", tmp_path / "cut.db"
    record(src, [make_call("Version", {"version": f"a{i}"}, {}, started=T0 + i) for i in range(10)])
    record(src, [make_call("ListContainers", {}, {"containers": []}, started=T0 + 100 + i) for i in range(10)])
    record(src, [make_call("Status", {}, {}, started=T0 + 200)])
    before = file_sha256(src)
    result = snapshot(src, dest, since=T0 + 102, until=T0 + 105, session=2)
    assert file_sha256(src) == before
    assert rows(dest, "SELECT session_id, started_unix FROM calls ORDER BY id") == [
        (2, T0 + 102), (2, T0 + 103), (2, T0 + 104), (2, T0 + 105)]
    assert rows(dest, "SELECT id FROM sessions") == [(2,)]
    assert (result.calls, result.sessions, result.calls_left_out) == (4, 1, 17)
    orphans = rows(dest, "SELECT count(*) FROM payloads WHERE id NOT IN (SELECT payload_id FROM messages)")
    assert orphans == [(0,)] and rows(dest, "SELECT count(*) FROM messages") == [(4 * 2,)]
    _valid(dest)
    only_time = snapshot(src, tmp_path / "t.db", since=T0 + 5)
    assert only_time.calls == 16 and only_time.sessions == 3


def test_a_window_of_deltas_keeps_their_keyframe_and_only_the_metadata_it_uses(tmp_path: Path) -> None:
    src, dest = tmp_path / "calls.db", tmp_path / "cut.db"
    rng = random.Random(5)
    sent = [stats_reply(60, s, rng) for s in range(5)]
    calls = [make_call("ListContainerStats", {}, data, started=T0 + s) for s, data in enumerate(sent)]
    calls[0].request_metadata = [("user-agent", "cut-out-client")]
    record(src, calls)
    snapshot(src, dest, since=T0 + 2)
    rec = Recording(dest)
    try:
        assert [c.responses for c in load_calls(rec.conn, Selection())] == [[d] for d in sent[2:]]
    finally:
        rec.close()
    assert rows(dest, "SELECT count(*) FROM payloads WHERE base_id IS NULL AND size > 2048") == [(1,)]  # the keyframe
    assert rows(dest, "SELECT count(*) FROM metadata_sets WHERE pairs LIKE '%cut-out-client%'") == [(0,)]
    _valid(dest)


def test_a_window_of_chained_deltas_keeps_every_link_it_needs_and_no_other(tmp_path: Path) -> None:
    """Deltas chained to the one before (recorder/packing.py): a window from the middle of a
    chain keeps the links before it that its deltas need, up to the keyframe, and drops the
    rest."""
    src, dest = tmp_path / "calls.db", tmp_path / "cut.db"
    rng = random.Random(6)
    step = packing.CHAIN_STEP_S
    sent = [stats_reply(200, 10 * s, rng) for s in range(packing.MAX_CHAIN + 6)]
    record(src, [make_call("ListContainerStats", {}, data, started=T0 + s * step) for s, data in enumerate(sent)])
    assert rows(src, "SELECT count(*) FROM payloads p JOIN payloads b ON b.id = p.base_id "
                     "WHERE b.data IS NULL") != [(0,)]  # some deltas' bases are deltas
    since = packing.MAX_CHAIN + 3
    snapshot(src, dest, since=T0 + since * step - 1)
    rec = Recording(dest)
    try:
        assert [c.responses for c in load_calls(rec.conn, Selection())] == [[d] for d in sent[since:]]
    finally:
        rec.close()
    needed = rows(dest, "WITH RECURSIVE needed(id) AS (SELECT payload_id FROM messages UNION SELECT p.base_id "
                        "FROM payloads p JOIN needed n ON p.id = n.id WHERE p.base_id IS NOT NULL) "
                        "SELECT count(*) FROM needed")  # fmt: skip
    assert rows(dest, "SELECT count(*) FROM payloads") == needed
    assert needed[0][0] > len(sent) - since  # links from before the window, and the keyframe
    _valid(dest)


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.stem)
def test_an_older_recording_gives_a_current_copy_and_is_not_changed(tmp_path: Path, golden: Path) -> None:
    src = tmp_path / golden.name
    shutil.copy(golden, src)
    before = file_sha256(src)
    result = snapshot(src, tmp_path / "copy.db")
    assert file_sha256(src) == before and not Path(f"{src}-wal").exists()
    assert result.schema_version == len(sql.migrations())
    assert rows(tmp_path / "copy.db", "SELECT count(*) FROM calls") == rows(src, "SELECT count(*) FROM calls")
    _valid(tmp_path / "copy.db")


def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "calls.db"
    record(src, [version_call(1)])
    (tmp_path / "taken.db").write_text("mine")
    with pytest.raises(StorageError, match="already exists"):
        snapshot(src, tmp_path / "taken.db")
    assert (tmp_path / "taken.db").read_text() == "mine"
    with pytest.raises(StorageError, match="no session 7 in the recording"):
        snapshot(src, tmp_path / "s.db", session=7)
    with pytest.raises(StorageError, match="no recording database"):
        snapshot(tmp_path / "absent.db", tmp_path / "a.db")
    with pytest.raises(StorageError, match="ends before it begins"):
        snapshot(src, tmp_path / "w.db", since=T0 + 10, until=T0)
    assert sorted(os.listdir(tmp_path)) == ["calls.db", "taken.db"]


def test_a_plain_copy_of_a_live_recording_misses_what_the_snapshot_has(tmp_path: Path) -> None:
    """Why the command exists: the live file's recent batches are in its -wal."""
    src = tmp_path / "calls.db"
    recorder = Recorder(src)
    recorder.start()
    try:
        for i in range(50):
            recorder.submit(version_call(i))
        wait_for(lambda: len(_ids(src)) == 50)
        shutil.copy(src, tmp_path / "cp.db")
        snapshot(src, tmp_path / "snap.db")
    finally:
        recorder.close()
    conn = sqlite3.connect(f"file:{tmp_path / 'cp.db'}?immutable=1", uri=True)
    try:
        has_calls = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'calls'").fetchone()[0]
        copied = conn.execute("SELECT count(*) FROM calls").fetchone()[0] if has_calls else 0  # often not even the tables
    finally:
        conn.close()
    assert copied < 50 and len(_ids(tmp_path / "snap.db")) == 50
