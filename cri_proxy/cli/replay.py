"""`cri-proxy replay` and `cri-proxy serve`. `register(app)` adds them to the main typer app.

Exit status of replay: 0 when every replayed call matched, 1 when any differed or failed (so
a replay can gate a runtime upgrade in CI), 2 for bad input: a missing or unreadable
database, an unknown session, a bad flag, an unreachable target (one line on stderr).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from cri_proxy.model.errors import ConfigError, CriProxyError
from cri_proxy.replay.pace import parse_pace
from cri_proxy.replay.report import check_report_path, write_report, write_terminal

if TYPE_CHECKING:  # loads sqlite3: imported by the commands, not by `cri-proxy run`
    from cri_proxy.replay.source import Selection

LOG_LEVELS = ("debug", "info", "warning", "error")


def _logging(level: str) -> None:
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip


def _fail(exc: CriProxyError) -> typer.Exit:
    typer.echo(f"cri-proxy: error: {exc}", err=True)
    return typer.Exit(2)


def _selection(session: Optional[int], since: Optional[str], until: Optional[str], where: Optional[str]) -> Selection:
    from cri_proxy.query.since import since_unix
    from cri_proxy.replay.source import Selection

    until_at = None
    if until is not None:
        try:
            until_at = since_unix(until)
        except ConfigError:
            raise ConfigError(f"--until {until!r}: give a duration ago (30s, 5m) or a UTC time") from None
    return Selection(session, since_unix(since) if since else None, until_at, where)


def replay(
    db: Path = typer.Argument(..., metavar="DB", help="The recording to replay (read only)."),
    target: str = typer.Option(..., "--target", help="The runtime to replay against, e.g. unix:///run/containerd/containerd.sock."),
    session: Optional[int] = typer.Option(None, "--session", help="Only this recorded session (sessions.id)."),
    since: Optional[str] = typer.Option(None, "--since", help="Only calls since then: 5m, 2h, or a UTC time."),
    until: Optional[str] = typer.Option(None, "--until", help="Only calls until then: 5m (ago), or a UTC time."),
    where: Optional[str] = typer.Option(None, "--where", help="An extra SQL condition on the calls table, e.g. \"method LIKE 'List%'\"."),
    allow_mutations: bool = typer.Option(False, "--allow-mutations", help="Also replay calls that change the node (RunPodSandbox, PullImage...)."),
    pace: str = typer.Option("fast", "--pace", help="fast (back to back), original (recorded gaps) or xN (N times faster)."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE", help="Write every call's result and differences to FILE.html or FILE.json."),
    ignore: list[str] = typer.Option([], "--ignore", metavar="GLOB", help="Also ignore response fields whose path matches this glob, e.g. 'status.labels.*' (repeatable)."),
    db_out: Optional[Path] = typer.Option(None, "--db-out", metavar="PATH", help="Record the replay here [default: DB itself]."),
    max_stream: float = typer.Option(5.0, "--max-stream-seconds", min=0.1, help="Read a server stream at most this long, then cancel it."),
    log_level: str = typer.Option("warning", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Re-issue recorded calls against a runtime, compare the answers, and record the replay as a new session."""
    from cri_proxy.replay.runner import ReplayOptions, run_replay

    _logging(log_level)
    try:
        if report is not None:
            check_report_path(report)
        opts = ReplayOptions(db=str(db), target=target, selection=_selection(session, since, until, where),
                             allow_mutations=allow_mutations, speed=parse_pace(pace), ignore=tuple(ignore),
                             db_out=str(db_out) if db_out else None, max_stream_s=max_stream, pace_text=pace)  # fmt: skip
        result = asyncio.run(run_replay(opts, typer.echo))
        write_terminal(sys.stdout, result)
        if report is not None:
            write_report(report, result)
            typer.echo(f"report written to {report}")
    except CriProxyError as exc:
        raise _fail(exc) from None
    raise typer.Exit(result.exit_code)


def serve(
    db: Path = typer.Argument(..., metavar="DB", help="The recording to answer from (read only)."),
    listen: str = typer.Option(..., "--listen", help="Socket to serve on, e.g. unix:///tmp/recorded.sock."),
    session: Optional[int] = typer.Option(None, "--session", help="Only this recorded session (sessions.id)."),
    api: str = typer.Option("both", "--api", help="CRI versions to serve: v1, v1alpha2 or both."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Answer CRI calls from a recording: a stand-in runtime that shows the recorded node."""
    from cri_proxy.replay.serve import ServeOptions, run_serve
    from cri_proxy.replay.source import Selection

    _logging(log_level)
    try:
        code = asyncio.run(run_serve(ServeOptions(str(db), listen, Selection(session=session), api), typer.echo))
    except CriProxyError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Adds `replay` and `serve` to the `cri-proxy` app."""
    app.command("replay")(replay)
    app.command("serve")(serve)
