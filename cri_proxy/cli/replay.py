"""`cri-proxy replay` and `cri-proxy serve`. `register(app)` adds them to the main typer app.

Both take the recording as `DB` (as they always did) or as `--db` / `$CRI_PROXY_DB` (as
every other command does): the two spellings mean the same.

Exit status of replay: 0 when every replayed call matched, 1 when any differed or failed (so
a replay can gate a runtime upgrade in CI), 2 for bad input: a missing or unreadable
database, an unknown session, a bad flag, an unreachable target (one line on stderr), 130
after Ctrl-C. Replay shows its progress on stderr (a bar on a terminal, lines elsewhere); a
first Ctrl-C ends it cleanly (its session closed, the summary of the calls done so far
printed, the report written), a second one at once.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

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
from cri_proxy.cli.runner import EXIT_INTERRUPTED, execute

if TYPE_CHECKING:
    from cri_proxy.store.selection import Selection

# replay loads protobuf and sqlite3: imported inside the commands, since `cri-proxy run` (the
# relay process, which must load neither) loads this module too.

DB_ARGUMENT_HELP = "The recording (read only); the same as --db, which also reads $CRI_PROXY_DB."


def selection(session: Optional[int], since: Optional[str], until: Optional[str], where: Optional[str]) -> Selection:
    """The calls `--session`, `--since`, `--until` and `--where` choose."""
    from cri_proxy.store.selection import Selection

    since_at, until_at = time_range(since, until)
    return Selection(session, since_at, until_at, where)


def replay(
    ctx: typer.Context,
    db_argument: Optional[Path] = typer.Argument(None, metavar="[DB]", help=DB_ARGUMENT_HELP),
    db: DbOption = None,
    target: str = typer.Option(..., "--target", help="The runtime to replay against, e.g. unix:///run/containerd/containerd.sock."),
    session: Annotated[Optional[int], session_option()] = None,
    since: Annotated[Optional[str], since_option()] = None,
    until: Annotated[Optional[str], until_option()] = None,
    where: Optional[str] = typer.Option(None, "--where", help="An extra SQL condition on the calls table, e.g. \"method LIKE 'List%'\"."),
    allow_mutations: bool = typer.Option(False, "--allow-mutations", help="Also replay calls that change the node (RunPodSandbox, PullImage...)."),
    pace: str = typer.Option("fast", "--pace", help="fast (back to back), original (recorded gaps) or xN (N times faster)."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE", help="Write every call's result and differences to FILE.html or FILE.json."),
    ignore: list[str] = typer.Option([], "--ignore", metavar="GLOB", help="Also ignore response fields whose path matches this glob, e.g. 'status.labels.*' (repeatable)."),
    db_out: Optional[Path] = typer.Option(None, "--db-out", metavar="PATH", help="Record the replay here (may be DB itself) [default: not recorded; DB is never changed]."),
    max_stream: float = typer.Option(5.0, "--max-stream-seconds", min=0.1, help="Read a server stream at most this long, then cancel it."),
    log_level: LogLevelOption = LogLevel.warning,
) -> None:
    """Re-issue recorded calls against a runtime and compare the answers (--db-out records the replay as a new session)."""

    async def main() -> int:
        import asyncio

        from cri_proxy.replay.pace import parse_pace
        from cri_proxy.replay.progress import for_stream
        from cri_proxy.replay.report import check_report_path, write_report, write_terminal
        from cri_proxy.replay.runner import ReplayOptions, run_replay

        if report is not None:
            check_report_path(report)
        opts = ReplayOptions(db=str(db_or_argument(ctx, db_argument, db)), target=target,
                             selection=selection(session, since, until, where), allow_mutations=allow_mutations,
                             speed=parse_pace(pace), ignore=tuple(ignore), db_out=str(db_out) if db_out else None,
                             max_stream_s=max_stream, pace_text=pace)  # fmt: skip
        stop, progress = asyncio.Event(), for_stream(sys.stderr)
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            stop.set()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C stops at once (exit 130)

        loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            result = await run_replay(opts, typer.echo, progress, stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
        write_terminal(sys.stdout, result)
        if report is not None:
            write_report(report, result)
            typer.echo(f"report written to {report}")
        if stop.is_set():
            typer.echo(f"interrupted (Ctrl-C) after {progress.done} of {progress.total} calls; "
                       "the summary above is of those", err=True)  # fmt: skip
            return EXIT_INTERRUPTED
        return result.exit_code

    execute(main, log_level)


def serve(
    ctx: typer.Context,
    db_argument: Optional[Path] = typer.Argument(None, metavar="[DB]", help=DB_ARGUMENT_HELP),
    db: DbOption = None,
    listen: str = typer.Option(..., "--listen", help="Socket to serve on, e.g. unix:///tmp/recorded.sock."),
    session: Annotated[Optional[int], session_option()] = None,
    api: str = typer.Option("both", "--api", help="CRI versions to serve: v1, v1alpha2 or both."),
    at: Optional[str] = typer.Option(None, "--at", metavar="TIME|end", help="Start the recorded timeline here: a time (2026-12-01T03:12:00Z; UTC unless it says otherwise), start, end, +5m after the first call or -5m before the last [default: start]."),
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Answer CRI calls from a recording: a stand-in runtime that shows the recorded node (--at end: as it was last seen)."""

    async def main() -> int:
        from cri_proxy.replay.serve import ServeOptions, run_serve
        from cri_proxy.store.selection import Selection

        path = str(db_or_argument(ctx, db_argument, db))
        return await run_serve(ServeOptions(path, listen, Selection(session=session), api, at), typer.echo)

    execute(main, log_level)


def register(app: typer.Typer) -> None:
    """Adds `replay` and `serve` to the `cri-proxy` app."""
    app.command("replay")(replay)
    app.command("serve")(serve)
