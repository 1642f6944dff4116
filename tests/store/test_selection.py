"""cri_proxy/store/selection.py: which calls a reader wants, as SQL over a real recording."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError, StorageError
from cri_proxy.store.readonly import open_readonly
from cri_proxy.store.selection import Selection, check_session, session_exists
from tests.helpers.calls import T0, make_call, record

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """Two sessions of three calls each, a second apart; the second session is a replay's."""
    path = tmp_path / "calls.db"
    record(path, [make_call("Version", {}, {}, started=T0 + i, stream_id=2 * i + 1) for i in range(3)])
    record(path, [make_call("ListPodSandbox", {}, {}, started=T0 + 10 + i, stream_id=2 * i + 1) for i in range(3)])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sessions SET config = json_object('replay_of', 1) WHERE id = 2")
    conn.commit()
    conn.close()
    return path


def select(path: Path, selection: Selection) -> list[tuple[int, str]]:
    where, args = selection.sql_where()
    conn = open_readonly(path)
    try:
        return conn.execute(f"SELECT c.session_id, c.method FROM calls c{where} ORDER BY c.id", args).fetchall()
    finally:
        conn.close()


def test_by_default_a_replays_session_is_left_out(recording: Path) -> None:
    assert select(recording, Selection()) == [(1, "Version")] * 3
    assert select(recording, Selection(session=2)) == [(2, "ListPodSandbox")] * 3


def test_time_range_includes_both_ends(recording: Path) -> None:
    assert len(select(recording, Selection(since=T0 + 1, until=T0 + 2))) == 2
    assert select(recording, Selection(since=T0 + 3)) == []


def test_where_is_anded_with_the_rest(recording: Path) -> None:
    where, args = Selection(session=2, where="c.stream_id > 1").sql_where()
    assert where == " WHERE (c.session_id = ?) AND (c.stream_id > 1)" and args == [2]
    assert len(select(recording, Selection(session=2, where="c.stream_id > 1"))) == 2


def test_a_bad_where_becomes_a_config_error_naming_it(recording: Path) -> None:
    selection = Selection(where="no_such_column = 1")
    with pytest.raises(sqlite3.OperationalError) as caught:
        select(recording, selection)
    error = selection.error(caught.value)
    assert isinstance(error, ConfigError)
    assert str(error) == "--where 'no_such_column = 1': no such column: no_such_column"


def test_an_absent_session_is_one_line(recording: Path) -> None:
    conn = open_readonly(recording)
    try:
        assert session_exists(conn, 2) and not session_exists(conn, 3)
        check_session(conn, None)
        check_session(conn, 1)
        with pytest.raises(StorageError, match=r"^no session 3 in the recording \(see: cri-proxy stats\)$"):
            check_session(conn, 3)
    finally:
        conn.close()
