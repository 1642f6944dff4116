"""Reading recordings written by older versions, without writing to them.

A read command opens a recording read-only (it may belong to a running proxy, or be a copy
on a laptop), so it cannot migrate it. Instead, like mitmproxy's io/compat.py, a chain of
steps each takes a recording one schema version up, here by defining what the older schema
lacks as TEMP objects: they live in the connection's own in-memory temp schema, shadow
nothing that exists in the file and vanish with the connection. Unqualified names resolve
to TEMP first, so every query, view and named query sees the newest schema.

- version 1 -> 2: no `losses` table (no loss episodes were recorded then): an empty view
  with its columns;
- version 2 -> 3: only an index was added: nothing to do for reading;
- version 3 -> 4: ids the writer had left NULL (calls whose JSON was over 4,096 characters)
  were filled in from the stored JSON; read-only, an older file shows them as stored;
- version 4 -> 5: no `calls.exit_code`: a TEMP view `calls` over the file's `calls` adds
  it, computed from the stored JSON by the migration's own expression (0005_exit_code.sql),
  so the file reads as if migrated;
- version 5 -> 6: metadata moved to `metadata_sets` behind a `calls` view with the same
  columns, which an older `calls` table already has; bodies may be deltas: a TEMP view
  `payloads` adds the `delta` and `base_id` columns, NULL (every older body is as it is).
- version 6 -> 7: no `call_minutes` (the per-minute rollups) nor `call_durations`: TEMP views
  compute them from the calls with the migration's own SELECTs (0007_call_minutes.sql), so `method_stats`,
  `stats` and `health` answer the same, at the speed of reading every call.
- version 7 -> 8: no `clients` table and no `calls.client_id`: an empty `clients` view, and
  `calls` (the file's, or the TEMP view of the step before) with `client_id` NULL, which is
  what the migration leaves on the calls it finds.
- version 8 -> 9: routes stored once behind the same `calls` columns, which an older file's
  `calls` already has: nothing to do.
- version 9 -> 10: messages narrowed into `message_rows` behind a `messages` view with the
  columns and values of the older `messages` table, which an older file still has: nothing to do.
- version 10 -> 11: only an index was dropped (`calls_session`): nothing to do for reading.
- version 11 -> 12: calls split into shapes and thin rows behind `calls` and `messages` views
  with the columns and values an older file's own `calls` and `messages` already have:
  nothing to do.
- version 12 -> 13: a delta of a few KiB may be in `payload_parts`, marked by an empty
  `payloads.delta`; an older file has no such mark: nothing to do.
- version 13 -> 14: the grpc-timeout value may be a number (`call_rows.timeout_code`) behind
  the same `calls.request_metadata`, which an older file's own `calls` view already spells
  from its `grpc_timeout` text: nothing to do.

Views last: when the file's own views are not this version's (an older file, or one whose
views were dropped), this version's views are defined as TEMP views over the file's tables,
so `errors`, `method_stats` and the rest answer as documented.

Adapting each query per schema version was the other way; it would spread version checks
over every reader and could not help a user's own SQL or the named queries.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from cri_proxy.store import sql
from cri_proxy.store.db import split_statements

_LOSSES_V2 = (
    "CREATE TEMP VIEW losses AS SELECT CAST(NULL AS INTEGER) AS id, CAST(NULL AS INTEGER) AS session_id, "
    "CAST(NULL AS TEXT) AS started_at, CAST(NULL AS TEXT) AS ended_at, CAST(NULL AS TEXT) AS reason, "
    "CAST(NULL AS INTEGER) AS calls_lost WHERE 0"
)


def _to_2(conn: sqlite3.Connection) -> None:
    conn.execute(_LOSSES_V2)


def _to_3(conn: sqlite3.Connection) -> None:
    """0003 added an index on calls(started_unix, id): reading works without it, slower."""


def _to_4(conn: sqlite3.Connection) -> None:
    """0004 filled in NULL ids from the stored JSON: a reader cannot, and needs nothing new."""


def _to_5(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TEMP VIEW calls AS SELECT c.*, {exit_code_sql('c')} AS exit_code FROM main.calls AS c")


def _to_6(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TEMP VIEW payloads AS SELECT p.*, CAST(NULL AS BLOB) AS delta, "
                 "CAST(NULL AS INTEGER) AS base_id FROM main.payloads AS p")


_EXIT_CODE_UPDATE = re.compile(r"SET exit_code = (\(.*?\))\s+WHERE (.*?);", re.DOTALL)


def exit_code_sql(alias: str) -> str:
    """The expression 0005_exit_code.sql fills `calls.exit_code` with, over `alias` (a calls
    row): read from the migration itself so the two cannot drift apart."""
    migration = next(m for m in sql.migrations() if m.name == "exit_code")
    match = _EXIT_CODE_UPDATE.search(migration.sql)
    if match is None:
        raise ValueError("0005_exit_code.sql no longer has its `SET exit_code = (...) WHERE ...;`")
    value, where = match.group(1).replace("calls.id", f"{alias}.id"), match.group(2)
    return f"(CASE WHEN {where} THEN {value} END)"


_MINUTES_SELECT = re.compile(r"^(SELECT substr\(started_at, 1, 16\) AS minute.*?)\n WHERE 1\n (GROUP BY .*?);", re.DOTALL | re.MULTILINE)


def call_minutes_select(where: str) -> str:
    """The SELECT 0007_call_minutes.sql fills `call_minutes` with, over the calls `where`
    selects (SQL over a `calls` row): read from the migration itself, as exit_code_sql is."""
    migration = next(m for m in sql.migrations() if m.name == "call_minutes")
    match = _MINUTES_SELECT.search(migration.sql)
    if match is None:
        raise ValueError("0007_call_minutes.sql no longer has its `SELECT ... WHERE 1 GROUP BY ...;`")
    return f"{match.group(1)}\n WHERE {where}\n {match.group(2)}"


_DURATIONS_SELECT = re.compile(r"^(SELECT service, method, duration_ms, COUNT\(\*\) AS calls\n  FROM calls)\n"
                               r" WHERE duration_ms IS NOT NULL\n (GROUP BY .*?);", re.DOTALL | re.MULTILINE)


def call_durations_select(where: str) -> str:
    """The SELECT 0007_call_minutes.sql fills `call_durations` with, over the calls `where` selects."""
    migration = next(m for m in sql.migrations() if m.name == "call_minutes")
    match = _DURATIONS_SELECT.search(migration.sql)
    if match is None:
        raise ValueError("0007_call_minutes.sql no longer has its call_durations `SELECT ... GROUP BY ...;`")
    return f"{match.group(1)}\n WHERE duration_ms IS NOT NULL AND ({where})\n {match.group(2)}"


def _to_7(conn: sqlite3.Connection) -> None:
    # `calls` unqualified: version 4 files read it through _to_5's TEMP view (with exit_code).
    conn.execute(f"CREATE TEMP VIEW call_minutes AS {call_minutes_select('1')}")
    conn.execute(f"CREATE TEMP VIEW call_durations AS {call_durations_select('1')}")


_CLIENTS_V7 = (
    "CREATE TEMP VIEW clients AS SELECT CAST(NULL AS INTEGER) AS id, CAST(NULL AS INTEGER) AS pid, "
    "CAST(NULL AS INTEGER) AS uid, CAST(NULL AS INTEGER) AS gid, CAST(NULL AS TEXT) AS name, "
    "CAST(NULL AS TEXT) AS exe WHERE 0"
)
_OUR_CALLS_VIEW = "CREATE VIEW calls AS "  # how SQLite keeps the text of the TEMP view _to_5 made


def _to_8(conn: sqlite3.Connection) -> None:
    conn.execute(_CLIENTS_V7)
    row = conn.execute("SELECT sql FROM temp.sqlite_master WHERE type = 'view' AND name = 'calls'").fetchone()
    source = "main.calls"
    if row is not None and str(row[0]).startswith(_OUR_CALLS_VIEW):
        source = f"({str(row[0])[len(_OUR_CALLS_VIEW):]})"  # a view over a view of the same name would loop
        conn.execute("DROP VIEW temp.calls")
    conn.execute(f"CREATE TEMP VIEW calls AS SELECT c.*, CAST(NULL AS INTEGER) AS client_id FROM {source} AS c")


def _to_9(conn: sqlite3.Connection) -> None:
    """0009 moved the route's text to `routes` behind the same `calls` columns: nothing to do."""


def _to_10(conn: sqlite3.Connection) -> None:
    """0010 moved the messages to `message_rows` behind a `messages` view with the older
    table's columns and values: an older file's `messages` table reads the same."""


def _to_11(conn: sqlite3.Connection) -> None:
    """0011 dropped the index calls(session_id): an older file reads the same with it."""


def _to_12(conn: sqlite3.Connection) -> None:
    """0012 stored what repeats in `call_shapes` behind the same `calls` and `messages`
    columns: an older file's own `calls` and `messages` read the same."""


def _to_13(conn: sqlite3.Connection) -> None:
    """0013 cut deltas of a few KiB into `payload_parts`, marked by an empty `payloads.delta`,
    which no older file has: the reader never asks an older file for parts."""


def _to_14(conn: sqlite3.Connection) -> None:
    """0014 stored the grpc-timeout value as a number behind the same `calls` columns: an
    older file's own `calls` view reads its text the same."""


# STEPS[n] takes a recording of schema version n to n + 1, for reading.
STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _to_2, 2: _to_3, 3: _to_4, 4: _to_5, 5: _to_6, 6: _to_7, 7: _to_8, 8: _to_9, 9: _to_10,
    10: _to_11, 11: _to_12, 12: _to_13, 13: _to_14,
}


_VIEW_NAME = re.compile(r"^CREATE VIEW (\w+)", re.MULTILINE)


def newest() -> int:
    return len(sql.migrations())


def adapt(conn: sqlite3.Connection, version: int) -> list[str]:
    """Defines, as TEMP objects, what a version-`version` recording lacks for reading as the
    newest schema. Returns what it did, one phrase per step (empty for a current file)."""
    done = []
    for step in range(version, newest()):
        adapter = STEPS.get(step)  # none: that migration changed nothing a reader needs
        if adapter is not None:
            adapter(conn)
            done.append(f"schema {step} -> {step + 1}")
    if _views_differ(conn):
        for name, statement in view_statements():
            conn.execute(statement.replace(f"CREATE VIEW {name}", f"CREATE TEMP VIEW {name}", 1))
        done.append("views of this version")
    return done


def view_statements() -> list[tuple[str, str]]:
    """(name, CREATE VIEW statement) of storage/views.sql, comments stripped, in order."""
    found = []
    for statement in split_statements(sql.views()):
        body = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--")).strip()
        match = _VIEW_NAME.match(body)
        if match:
            found.append((match.group(1), body.rstrip(";").rstrip()))
    return found


def _normal(text: str) -> str:
    return " ".join(text.split())


def _views_differ(conn: sqlite3.Connection) -> bool:
    stored = dict(conn.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'view'").fetchall())
    return any(_normal(stored.get(name) or "") != _normal(text) for name, text in view_statements())
