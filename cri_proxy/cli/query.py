"""The read commands: `cri-proxy query`, `tail` and `stats`. `register(app)` adds them to the
main typer app. They open the recording read-only and never create or change it; an error
they can name (missing file, bad SQL, bad flag) is one line `cri-proxy: error: ...` and
exit status 2."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cri_proxy.model.errors import ConfigError, CriProxyError
from cri_proxy.query import DB_ENV, DEFAULT_DB, default_db
from cri_proxy.query import output

if TYPE_CHECKING:  # the rest loads sqlite3: imported by the commands, not by `cri-proxy run`
    from cri_proxy.store.readonly import Recording

DB_HELP = f"The recording database [default: ${DB_ENV}, else {DEFAULT_DB}]."
FORMAT_HELP = "Output format: table, json, jsonl or csv."


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """CriProxyError -> one line and exit 2; Ctrl-C -> 130; a closed stdout (`| head`) -> a
    quiet exit 0."""
    try:
        yield
    except CriProxyError as exc:
        typer.echo(f"cri-proxy: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # Ctrl-C during a long query: no traceback
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # Python would complain again flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def _format(value: str, allowed: tuple[str, ...] = output.FORMATS) -> str:
    try:
        return output.check_format(value, allowed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None


@contextlib.contextmanager
def _recording(db: Optional[str]) -> Iterator[Recording]:
    from cri_proxy.store.readonly import Recording

    recording = Recording(db or default_db())
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


def query(
    sql: Optional[str] = typer.Argument(None, metavar="SQL", help="One SQL statement; '-' reads it from stdin."),
    db: Optional[str] = typer.Option(None, "--db", metavar="PATH", help=DB_HELP),
    file: Optional[Path] = typer.Option(None, "--file", metavar="FILE", help="Read the SQL from this file ('-': stdin)."),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP + " Table cells are cut short; the others are full."),
    schema: bool = typer.Option(False, "--schema", help="List the tables and views with their columns."),
    named: Optional[str] = typer.Option(None, "--named", help="Run a named investigation query (see --list-named)."),
    param: Optional[list[str]] = typer.Option(None, "--param", metavar="NAME=VALUE", help="NAME=VALUE for a :NAME in the SQL (repeatable)."),
    list_named: bool = typer.Option(False, "--list-named", help="List the named queries and their parameters."),
) -> None:
    """Run SQL against a recording, read-only (the database is never created or changed)."""
    from cri_proxy.query import sqlrun

    fmt = _format(fmt)
    with _errors():
        chosen = [flag for flag, on in (("SQL", sql is not None or file is not None), ("--schema", schema),
                                        ("--named", named is not None), ("--list-named", list_named)) if on]  # fmt: skip
        if len(chosen) > 1:
            raise ConfigError(f"give only one of {', '.join(chosen)}")
        if list_named:
            if fmt == "table":
                typer.echo(sqlrun.named_text(), nl=False)
            else:
                output.write_rows(sys.stdout, fmt, sqlrun.NAMED_COLUMNS, sqlrun.named_rows())
            return
        params = sqlrun.parse_params(param or [])
        statement = None if schema or named else _read_sql(sql, file)
        with _recording(db) as recording:
            if schema:
                output.write_rows(sys.stdout, fmt, sqlrun.SCHEMA_COLUMNS, sqlrun.schema_rows(recording.conn))
                return
            if named is not None:
                columns, rows = sqlrun.run_named(recording.conn, named, params)
            else:
                columns, rows = sqlrun.run(recording.conn, statement or "", params)
            output.write_rows(sys.stdout, fmt, columns, rows)


def tail(
    db: Optional[str] = typer.Option(None, "--db", metavar="PATH", help=DB_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="First show the calls since then: 5m, 2h, or a UTC time."),
    method: Optional[str] = typer.Option(
        None, "--method", help="Only methods matching this glob (ListContainers, '*Image*', 'v1.RuntimeService/*')."),
    errors: bool = typer.Option(False, "--errors", help="Only failed calls (status not OK, or never completed)."),
    fmt: str = typer.Option("line", "--format", help="line (one line per call) or jsonl."),
    last: Optional[int] = typer.Option(None, "-n", min=0, help="First show the last N matching calls."),
) -> None:
    """Follow calls as the proxy records them, one line each (times UTC; Ctrl-C to stop)."""
    from cri_proxy.query.since import since_text
    from cri_proxy.query.tail import TAIL_FORMATS, Filters, follow

    fmt = _format(fmt, TAIL_FORMATS)
    terminated = False

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal terminated
        terminated = True  # a plain flag: a signal handler must not take a lock

    signal.signal(signal.SIGTERM, on_sigterm)
    with _errors():
        try:
            filters = Filters(method, errors, since_text(since) if since else None)
            with _recording(db) as recording:
                follow(recording, sys.stdout, fmt, filters, last=last, stopped=lambda: terminated)
        except KeyboardInterrupt:  # Ctrl-C is how a tail ends: exit 0
            pass


def stats(
    db: Optional[str] = typer.Option(None, "--db", metavar="PATH", help=DB_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="Only calls since then: 5m, 2h, or a UTC time."),
    session: Optional[int] = typer.Option(None, "--session", help="Only this proxy run (sessions.id)."),
    fmt: str = typer.Option("table", "--format", help=FORMAT_HELP),
) -> None:
    """Per method: calls, errors, p50/p95/p99 latency, bytes; per proxy run: calls recorded and LOST."""
    from cri_proxy.query.since import since_text
    from cri_proxy.query.stats import compute

    fmt = _format(fmt)
    with _errors():
        since_at = since_text(since) if since else None
        with _recording(db) as recording:
            result = compute(recording.conn, since_at=since_at, session=session)
        output.write_sections(sys.stdout, fmt, result.sections())
        warning = result.loss_warning()
        if warning:
            sys.stdout.flush()
            typer.echo(f"cri-proxy: warning: {warning}", err=True)


def register(app: typer.Typer) -> None:
    """Adds `query`, `tail` and `stats` to the `cri-proxy` app."""
    app.command("query")(query)
    app.command("tail")(tail)
    app.command("stats")(stats)
