"""Reading a recording back: the batched stream a replay uses gives exactly what `serve` loads."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from cri_proxy.model.cri import MUTATING
from cri_proxy.model.errors import ConfigError, StorageError
from cri_proxy.store.reader import CallStream, load_calls
from cri_proxy.store.readonly import Recording
from cri_proxy.store.rows import StoredCall
from cri_proxy.store.selection import Selection
from tests.helpers.recordings import Recorded
pytestmark = pytest.mark.timeout(60)


def _loaded(db: pathlib.Path, selection: Selection) -> list[StoredCall]:
    rec = Recording(db)
    try:
        return load_calls(rec.conn, selection)
    finally:
        rec.close()


async def _streamed(db: pathlib.Path, selection: Selection, **batch: int) -> list[StoredCall]:
    async with await CallStream.open(db, selection, **batch) as stream:
        return [call async for call in stream]


@pytest.mark.parametrize("batch", [{"batch_calls": 1}, {"batch_calls": 7}, {"batch_bytes": 1}, {}])
async def test_the_stream_gives_every_call_in_order_with_its_messages(recording: Recorded,
                                                                      batch: dict[str, int]) -> None:
    expected = _loaded(recording.db, Selection())
    assert len(expected) == recording.calls
    assert sum(len(c.responses) for c in expected) > recording.calls // 2  # the messages are there to compare
    assert await _streamed(recording.db, Selection(), **batch) == expected


async def test_the_summary_counts_what_the_stream_gives(recording: Recorded) -> None:
    selection = Selection(where="method <> 'Version'")
    expected = _loaded(recording.db, selection)
    async with await CallStream.open(recording.db, selection) as stream:
        summary = await stream.summary()
        calls = [call async for call in stream]
    assert calls == expected
    assert summary.count == len(expected) and summary.first_started_unix == expected[0].started_unix
    assert summary.mutating == sum(1 for c in expected if c.method in MUTATING) > 0
    assert summary.sessions == sorted({c.session_id for c in expected})


async def test_a_bad_selection_is_one_clear_error(recording: Recorded) -> None:
    async with await CallStream.open(recording.db, Selection(where="no_such_column = 1")) as stream:
        with pytest.raises(ConfigError, match="--where 'no_such_column = 1': no such column"):
            await stream.summary()
        with pytest.raises(ConfigError, match="no such column"):
            [call async for call in stream]
    with pytest.raises(StorageError, match="no session 99 in the recording"):
        await CallStream.open(recording.db, Selection(session=99))


async def test_the_file_can_be_written_while_it_is_streamed(recording: Recorded) -> None:
    expected = _loaded(recording.db, Selection())
    writer = sqlite3.connect(recording.db, timeout=5)
    got = []
    async with await CallStream.open(recording.db, Selection(), batch_calls=3) as stream:
        async for call in stream:
            got.append(call)
            if len(got) == 4:  # a replay's own calls are written into the file it reads
                writer.execute("INSERT INTO calls SELECT * FROM calls WHERE id = (SELECT max(id) FROM calls)"
                               .replace("SELECT *", "SELECT " + _columns_with_new_id(writer)))
                writer.commit()
    writer.close()
    assert got == expected


def _columns_with_new_id(conn: sqlite3.Connection) -> str:
    names = [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
    return ", ".join("id + 100000" if n == "id" else n for n in names)


def test_calls_are_read_in_start_order_through_the_index_without_a_sort(recording: Recorded) -> None:
    from cri_proxy.store.reader import select_sql

    rec = Recording(recording.db)
    try:
        for selection in (Selection(), Selection(since=0.0, until=4e9, where="method <> 'Version'")):
            query, args = select_sql(selection)
            plan = " / ".join(row[3] for row in rec.conn.execute("EXPLAIN QUERY PLAN " + query, args))
            assert "calls_started_unix" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        rec.close()


async def test_a_stream_left_half_way_closes_cleanly(recording: Recorded) -> None:
    async with await CallStream.open(recording.db, Selection(), batch_calls=2) as stream:
        got = []
        async for call in stream:
            got.append(call.id)
            if len(got) == 3:
                break
    assert len(got) == 3
    with pytest.raises(sqlite3.ProgrammingError):  # closed, and no read was left running on it
        stream.recording.conn.execute("SELECT 1")
