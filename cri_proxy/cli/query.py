"""The read commands: `cri-proxy query`, `tail` and `stats`. `register(app)` adds them to the
main typer app. They open the recording read-only and never create or change it; an error
they can name (missing file, bad SQL, bad flag) is one line `cri-proxy: error: ...` and
exit status 2 (cli/runner.py)."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cri_proxy.cli.options import (
    DbOption,
    NoTruncOption,
    OutputFormat,
    TailFormat,
    choice_option,
    format_option,
    read_db,
    session_option,
    since_option,
)
from cri_proxy.cli.runner import execute
from cri_proxy.model.errors import ConfigError

if TYPE_CHECKING:
    from cri_proxy.store.readonly import Recording

# The read side (sqlite3, the store) is imported inside each command: `cri-proxy run`, the
# relay process, loads this module too and must not load sqlite3 (see proxy/).


@contextlib.contextmanager
def _recording(db: Optional[Path]) -> Iterator[Recording]:
    from cri_proxy.store.readonly import Recording

    recording = Recording(read_db(db))
    try:
        yield recording
    finally:
        recording.close()


def _read_sql(sql_arg: Optional[str], file: Optional[Path]) -> str:
    if sql_arg is not None and file is not None:
        raise ConfigError("give the SQL either as an argument or with --file, not both")
    if file is not None:
        try:
            return file.read_text() if str(file) != "-" else sys.stdin.read()
        except OSError as exc:
            raise ConfigError(f"cannot read --file {file}: {exc.strerror}") from None
    if sql_arg == "-" or (sql_arg is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    if sql_arg is None:
        raise ConfigError("no SQL given: pass it as an argument, with --file, or on stdin (see --schema, --list-named)")
    return sql_arg


def json_value(value: Any) -> Any:
    """Text that holds a JSON object or array (metadata, trailers, notes, decoded messages,
    json_extract() of a list) as that JSON value, so `--format json` nests it instead of
    escaping it into a string (sqlite-utils' --json-cols, on by default here)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, (dict, list)) else value
    return value


def json_rows(fmt: OutputFormat, rows: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
    """The rows as `fmt` should carry them: JSON text nested in json and jsonl, left as text
    in table and CSV."""
    if fmt not in (OutputFormat.json, OutputFormat.jsonl):
        return rows
    return ([json_value(v) for v in row] for row in rows)


def _write(fmt: OutputFormat, columns: Sequence[str], rows: Iterable[Sequence[Any]], no_trunc: bool) -> None:
    from cri_proxy.query import output

    max_cell = None if no_trunc else output.MAX_CELL
    output.write_rows(sys.stdout, fmt.value, columns, json_rows(fmt, rows), max_cell=max_cell)


def query(
    sql: Optional[str] = typer.Argument(None, metavar="SQL", help="One SQL statement; '-' reads it from stdin."),
    db: DbOption = None,
    file: Optional[Path] = typer.Option(None, "--file", metavar="FILE", help="Read the SQL from this file ('-': stdin)."),
    fmt: Annotated[OutputFormat, format_option(
        "Output format: table, json, jsonl or csv. Table cells are cut short (see --no-trunc); the others are full; "
        "JSON text is nested as JSON in json and jsonl.")] = OutputFormat.table,
    no_trunc: NoTruncOption = False,
    schema: bool = typer.Option(False, "--schema", help="List the tables and views with their columns."),
    named: Optional[str] = typer.Option(None, "--named", help="Run a named investigation query (see --list-named)."),
    param: Optional[list[str]] = typer.Option(None, "--param", metavar="NAME=VALUE", help="NAME=VALUE for a :NAME in the SQL (repeatable)."),
    list_named: bool = typer.Option(False, "--list-named", help="List the named queries and their parameters."),
) -> None:
    """Run SQL against a recording, read-only (the database is never created or changed)."""

    def main() -> None:
        from cri_proxy.query import sqlrun

        chosen = [flag for flag, on in (("SQL", sql is not None or file is not None), ("--schema", schema),
                                        ("--named", named is not None), ("--list-named", list_named)) if on]  # fmt: skip
        if len(chosen) > 1:
            raise ConfigError(f"give only one of {', '.join(chosen)}")
        if list_named:
            if fmt is OutputFormat.table:
                typer.echo(sqlrun.named_text(), nl=False)
            else:
                _write(fmt, sqlrun.NAMED_COLUMNS, sqlrun.named_rows(), no_trunc)
            return
        params = sqlrun.parse_params(param or [])
        statement = None if schema or named else _read_sql(sql, file)
        with _recording(db) as recording:
            if schema:
                _write(fmt, sqlrun.SCHEMA_COLUMNS, sqlrun.schema_rows(recording.conn), no_trunc)
                return
            if named is not None:
                columns, rows = sqlrun.run_named(recording.conn, named, params)
            else:
                columns, rows = sqlrun.run(recording.conn, statement or "", params)
            _write(fmt, columns, rows, no_trunc)

    execute(main)


def tail(
    db: DbOption = None,
    since: Annotated[Optional[str], since_option("First show the calls since then: 5m, 2h, or a UTC time.")] = None,
    method: Optional[str] = typer.Option(
        None, "--method", help="Only methods matching this glob (ListContainers, '*Image*', 'v1.RuntimeService/*')."),
    errors: bool = typer.Option(False, "--errors", help="Only failed calls (status not OK, or never completed)."),
    fmt: Annotated[TailFormat, choice_option(
        "--format", TailFormat, "line (one line per call) or jsonl.")] = TailFormat.line,
    no_trunc: NoTruncOption = False,
    last: Optional[int] = typer.Option(None, "-n", min=0, help="First show the last N matching calls."),
) -> None:
    """Follow calls as the proxy records them, one line each (times UTC; Ctrl-C to stop)."""
    terminated = False

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal terminated
        terminated = True  # a plain flag: a signal handler must not take a lock

    def main() -> None:
        from cri_proxy.query.since import since_text
        from cri_proxy.query.tail import ID_CHARS, Filters, follow

        try:
            filters = Filters(method, errors, since_text(since) if since else None)
            with _recording(db) as recording:
                follow(recording, sys.stdout, fmt.value, filters, last=last, stopped=lambda: terminated,
                       id_chars=None if no_trunc else ID_CHARS)  # fmt: skip
        except KeyboardInterrupt:  # Ctrl-C is how a tail ends: exit 0
            pass

    # Signal handlers belong to the main thread; put the old one back (the command may run
    # inside a longer-lived process, such as a test runner).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_sigterm) if in_main else None
    try:
        execute(main)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def stats(
    db: DbOption = None,
    since: Annotated[Optional[str], since_option()] = None,
    session: Annotated[Optional[int], session_option("Only this proxy run (sessions.id).")] = None,
    fmt: Annotated[OutputFormat, format_option()] = OutputFormat.table,
    no_trunc: NoTruncOption = False,
    clients: bool = typer.Option(False, "--clients", help="Also a table of calls by the client process that made "
                                 "them (name, uid, executable): who changed what."),
) -> None:
    """Per method: calls, errors, p50/p95/p99 latency, bytes; per proxy run: calls recorded and LOST."""

    def main() -> None:
        from cri_proxy.query import output
        from cri_proxy.query.since import since_text
        from cri_proxy.query.stats import compute

        since_at = since_text(since) if since else None
        with _recording(db) as recording:
            result = compute(recording.conn, since_at=since_at, session=session)
            sections = result.sections()
            if clients:
                from cri_proxy.query import clients as by_client

                sections.insert(1, by_client.compute(recording.conn, since_at=since_at, session=session))
        output.write_sections(sys.stdout, fmt.value, sections, max_cell=None if no_trunc else output.MAX_CELL)
        warning = result.loss_warning()
        if warning:
            sys.stdout.flush()
            typer.echo(f"cri-proxy: warning: {warning}", err=True)

    execute(main)


def register(app: typer.Typer) -> None:
    """Adds `query`, `tail` and `stats` to the `cri-proxy` app."""
    app.command("query")(query)
    app.command("tail")(tail)
    app.command("stats")(stats)
