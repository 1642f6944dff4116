"""The recording's time text: SQLite's datetime() shape plus milliseconds, in UTC."""

from __future__ import annotations

import sqlite3

from cri_proxy.model.clock import utc_text


def test_shape_and_rounding() -> None:
    assert utc_text(0) == "1970-01-01 00:00:00.000"
    assert utc_text(1_800_000_000.1234) == "2027-01-15 08:00:00.123"
    assert utc_text(1_800_000_000.9996) == "2027-01-15 08:00:01.000"  # rounds into the next second


def test_compares_as_text_against_sqlite_datetime() -> None:
    conn = sqlite3.connect(":memory:")
    (now,) = conn.execute("SELECT datetime('now')").fetchone()
    assert conn.execute("SELECT ? < ?", (utc_text(0), now)).fetchone() == (1,)
    assert utc_text(1_800_000_000)[:19] == conn.execute("SELECT datetime(1800000000, 'unixepoch')").fetchone()[0]
