"""The recording's time text: SQLite's datetime() shape plus milliseconds, in UTC."""

from __future__ import annotations

import random
import sqlite3

from cri_proxy.model.clock import started_sql, text_unix, utc_text

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def test_shape_and_rounding() -> None:
    assert utc_text(0) == "1970-01-01 00:00:00.000"
    assert utc_text(1_800_000_000.1234) == "2027-01-15 08:00:00.123"
    assert utc_text(1_800_000_000.9996) == "2027-01-15 08:00:01.000"  # rounds into the next second


def test_compares_as_text_against_sqlite_datetime() -> None:
    conn = sqlite3.connect(":memory:")
    (now,) = conn.execute("SELECT datetime('now')").fetchone()
    assert conn.execute("SELECT ? < ?", (utc_text(0), now)).fetchone() == (1,)
    assert utc_text(1_800_000_000)[:19] == conn.execute("SELECT datetime(1800000000, 'unixepoch')").fetchone()[0]


def test_utc_text_is_the_text_the_calls_view_derives_ties_rounded_up() -> None:
    """Schema 12's `calls.started_at` is SQLite's text of `started_unix` (round() half up):
    the writer's text must be the same for every time, the exact half milliseconds too."""
    rng = random.Random(12)
    times = [T0 + rng.uniform(0, 86400 * 365) for _ in range(20000)]
    times += [T0 + k / 1000 + 0.0005 for k in range(2000)]  # ties (as near as a double gets)
    times += [1_800_000_000.0005, 1_800_000_000.0015, 0.0005, 1.9995]
    conn = sqlite3.connect(":memory:")
    derived = "strftime('%Y-%m-%d %H:%M:%S', CAST(round(? * 1000) AS INTEGER) / 1000, 'unixepoch') || " \
              "printf('.%03d', CAST(round(? * 1000) AS INTEGER) % 1000)"
    assert [utc_text(t) for t in times] == [conn.execute(f"SELECT {derived}", (t, t)).fetchone()[0] for t in times]
    assert utc_text(0.0005) == "1970-01-01 00:00:00.001"  # Python's round() would give .000


def test_started_sql_selects_what_the_text_filter_selects() -> None:
    rng = random.Random(3)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE calls (started_unix REAL, started_at TEXT)")
    times = [T0 + rng.uniform(0, 300) for _ in range(3000)] + [T0 + 60 - 0.0004, T0 + 59.9996, T0 + 120.0004]
    conn.executemany("INSERT INTO calls VALUES (?, ?)", [(t, utc_text(t)) for t in times])
    for since, minute in (("2027-01-15 08:01:00.000", None), ("2027-01-15 08:00:30.250", "2027-01-15 08:01"),
                          ("2027-01-15 08:01", "2027-01-15 08:01")):
        text = f"started_at >= '{since}'" + (f" AND started_at < '{minute}:~'" if minute else "")
        want = conn.execute(f"SELECT count(*) FROM calls WHERE {text}").fetchone()[0]
        assert conn.execute(f"SELECT count(*) FROM calls WHERE {started_sql(since, minute)}").fetchone()[0] == want
        assert want > 0
    assert text_unix("2027-01-15 08:00:00.250") == T0 + 0.25 and text_unix("2027-01-15") == T0 - 8 * 3600
