"""Running one SQL statement, a named query of storage/queries/, or the schema listing,
against a read-only recording. Each returns column names and rows for `output`."""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

from cri_proxy.model.errors import ConfigError
from cri_proxy.store import sql
from cri_proxy.store.sql import NamedQuery

Result = tuple[list[str], Iterator[Sequence[Any]]]


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`k=v` strings as a dict; a leading `:` on the name is dropped. Values stay text (SQLite
    converts them where a number is needed: `LIMIT :limit`, `:minutes * 60`)."""
    params: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lstrip(":")
        if not sep or not name:
            raise ConfigError(f"--param wants NAME=VALUE, got {pair!r}")
        params[name] = value
    return params


def run(conn: sqlite3.Connection, statement: str, params: dict[str, str] | None = None) -> Result:
    """Runs one statement. A bad one (syntax, unknown table, a write, a missing parameter)
    raises ConfigError('query failed: <sqlite's message>')."""
    if not statement.strip():
        raise ConfigError("no SQL given")
    try:
        cursor = conn.execute(statement, params or {})
        columns = [d[0] for d in cursor.description or ()]
    except (sqlite3.Error, sqlite3.Warning) as exc:
        raise ConfigError(f"query failed: {exc}") from None
    return columns, _fetch(cursor)


def _fetch(cursor: sqlite3.Cursor) -> Iterator[Sequence[Any]]:
    """The cursor's rows; an error while stepping (e.g. a bad value) is a failed query too."""
    try:
        while rows := cursor.fetchmany(500):
            yield from rows
    except sqlite3.Error as exc:
        raise ConfigError(f"query failed: {exc}") from None


def named_query(name: str) -> NamedQuery:
    queries = sql.queries()
    if name not in queries:
        raise ConfigError(f"no named query {name!r} (known: {', '.join(sorted(queries))}; see --list-named)")
    return queries[name]


def run_named(conn: sqlite3.Connection, name: str, params: dict[str, str]) -> Result:
    """Runs a named query; every parameter its header declares must be given, and no other."""
    query = named_query(name)
    missing = [p for p in query.params if p not in params]
    if missing:
        wanted = " ".join(f"--param {p}=..." for p in missing)
        raise ConfigError(f"named query {name} needs {wanted}")
    unknown = [p for p in params if p not in query.params]
    if unknown:
        known = ", ".join(query.params) or "none"
        raise ConfigError(f"named query {name} has no parameter {', '.join(unknown)} (its parameters: {known})")
    return run(conn, query.sql, params)


NAMED_COLUMNS = ["name", "parameters", "description"]


def named_rows() -> list[tuple[str, str, str]]:
    """name, parameters ("pod_name: the pod's metadata.name; ..."), description."""
    return [
        (q.name, "; ".join(f"{p}: {meaning}" for p, meaning in q.params.items()), q.description)
        for q in sorted(sql.queries().values(), key=lambda q: q.name)
    ]


def named_text() -> str:
    """--list-named for people: each query with how to run it and what it answers."""
    blocks = []
    for q in sorted(sql.queries().values(), key=lambda q: q.name):
        usage = " ".join([f"cri-proxy query --named {q.name}"] + [f"--param {p}=..." for p in q.params])
        lines = [q.name, textwrap.fill(q.description, 92, initial_indent="    ", subsequent_indent="    "),
                 f"    {usage}"]  # fmt: skip
        lines += [f"    {p}: {meaning}" for p, meaning in q.params.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


SCHEMA_COLUMNS = ["object", "kind", "column", "type", "notnull", "pk"]


def schema_rows(conn: sqlite3.Connection) -> list[tuple[str, str, str, str, int, int]]:
    """One row per column of every table and view (tables first, then views), as the reader
    sees them: an older recording's missing objects come from store/compat.py's TEMP schema."""
    try:
        objects = conn.execute(
            "SELECT name, type FROM (SELECT name, type, 0 AS temp, rowid AS n FROM main.sqlite_master "
            "UNION ALL SELECT name, type, 1, rowid FROM temp.sqlite_master WHERE name NOT IN "
            "(SELECT name FROM main.sqlite_master)) WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'view', temp, n"
        ).fetchall()
        found = []
        for name, kind in objects:
            for _cid, column, ctype, notnull, _default, pk in conn.execute(
                "SELECT * FROM pragma_table_info(?)", (name,)
            ):
                found.append((name, kind, column, ctype or "", notnull, pk))
    except sqlite3.Error as exc:
        raise ConfigError(f"query failed: {exc}") from None
    return found
