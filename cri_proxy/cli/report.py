"""`cri-proxy report`: one self-contained HTML page of a recording (cri_proxy/report/).
`register(app)` adds it to the main typer app. Like the other read commands it opens the
recording read-only; a missing file, an unknown session or an unwritable -o is one line
`cri-proxy: error: ...` and exit status 2 (cli/runner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cri_proxy.cli.options import (
    DbOption,
    LogLevel,
    LogLevelOption,
    db_or_argument,
    session_option,
    since_option,
    time_range,
    until_option,
)
from cri_proxy.cli.runner import execute
from cri_proxy.model.errors import ConfigError

# The report loads sqlite3: imported inside the command (`cri-proxy run` loads this module too).


def report(
    ctx: typer.Context,
    db_argument: Optional[Path] = typer.Argument(None, metavar="[DB]", help="The recording (read only); the same as --db."),
    db: DbOption = None,
    out: Path = typer.Option(..., "-o", "--output", metavar="FILE.html", help="Where to write the page."),
    session: Annotated[Optional[int], session_option()] = None,
    since: Annotated[Optional[str], since_option()] = None,
    until: Annotated[Optional[str], until_option()] = None,
    log_level: LogLevelOption = LogLevel.warning,
) -> None:
    """Write one self-contained HTML page of a recording: rates, latency, errors and losses over time, relists, pods, the slowest calls."""

    def main() -> None:
        from cri_proxy.report.build import write_report
        from cri_proxy.store.selection import Selection

        if out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"-o {out}: name the page .html")
        since_at, until_at = time_range(since, until)
        written = write_report(db_or_argument(ctx, db_argument, db), out, Selection(session, since_at, until_at))
        typer.echo(f"{written.path}: {written.calls} calls, {written.size / 1e6:.1f} MB, in {written.seconds:.1f} s")

    execute(main, log_level)


def register(app: typer.Typer) -> None:
    """Adds `report` to the `cri-proxy` app."""
    app.command("report")(report)
