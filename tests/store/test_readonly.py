"""cri_proxy/store/readonly.py: opening a recording for reading, never changing it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.errors import StorageError
from cri_proxy.store.readonly import Recording, open_readonly
from tests.helpers.calls import make_call, record

pytestmark = pytest.mark.timeout(30)


def _recorded(tmp_path: Path) -> Path:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})])
    return path


def test_a_stopped_recording_is_read_immutable_without_side_files(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    assert not Path(f"{path}-wal").exists()
    reading = Recording(path)
    try:
        assert reading.immutable and reading.schema_version > 0
        assert reading.conn.execute("SELECT method FROM calls").fetchall() == [("Version",)]
    finally:
        reading.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.db"]


def test_a_live_recording_shares_the_writers_wal(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    writer = sqlite3.connect(path)  # a writer with the WAL open, as a running proxy has
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("UPDATE sessions SET listen = 'later'")
    writer.commit()
    try:
        reading = Recording(path)
        assert not reading.immutable
        assert reading.conn.execute("SELECT listen FROM sessions").fetchall() == [("later",)]
        reading.close()
    finally:
        writer.close()


@pytest.mark.parametrize(("statement", "error"), [("ATTACH 'other.db' AS o", "not authorized"),
                                                  ("PRAGMA query_only = 0", "not authorized"),
                                                  ("CREATE TABLE x (a)", "readonly|query_only")])
def test_statements_that_would_write_are_refused(tmp_path: Path, statement: str, error: str) -> None:
    conn = open_readonly(_recorded(tmp_path))
    try:
        with pytest.raises(sqlite3.DatabaseError, match=error):
            conn.execute(statement)
    finally:
        conn.close()
    assert not (tmp_path / "other.db").exists()


def test_what_is_not_a_recording_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is not a file"):
        open_readonly(tmp_path)
    plain = tmp_path / "plain.db"
    conn = sqlite3.connect(plain)
    conn.execute("CREATE TABLE t (a)")
    conn.close()
    with pytest.raises(StorageError, match=r"is not a cri-proxy recording \(no schema_migrations table\)"):
        open_readonly(plain)


def test_refresh_notices_a_removed_or_replaced_file(tmp_path: Path) -> None:
    path = _recorded(tmp_path)
    reading = Recording(path)
    try:
        reading.refresh()  # unchanged: nothing to do
        (tmp_path / "other").mkdir()
        other = _recorded(tmp_path / "other")
        os.replace(other, path)
        with pytest.raises(StorageError, match="was replaced by another file"):
            reading.refresh()
        path.unlink()
        with pytest.raises(StorageError, match="was removed"):
            reading.refresh()
    finally:
        reading.close()


def test_read_only_connection_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {"version": "0.1.0"}, {"runtime_name": "containerd"})])
    conn = open_readonly(path)
    try:
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM calls")
    finally:
        conn.close()
