"""`cri-proxy export DB --otlp-endpoint URL`: a recording's calls as OpenTelemetry spans, after
the fact, so that a recording carried off a node lands in the same backend as live spans.

Each selected call becomes the span the live recorder would have made of it
(recorder/spans.py builds both): a call whose recorded request carried a sampled
`traceparent` is that span's child, every other call a root span (the live proxy makes those
only with `--trace-sample-ratio`; here every call is wanted), and a call whose traceparent
said "not sampled" gets none, as live. The CRI facts are the recording's id columns, under
the same attribute names (telemetry.FACT_NAMES); `host.name` is the recording session's
host, not this machine's.

Calls are read a batch at a time without their messages and sent a batch at a time: the
next batch is made only once the last one was exported, so memory stays that of one batch
and a slow collector slows the export instead of losing spans. A collector that takes none
of the first batch stops the export (exit 2); spans lost on the way are counted (exit 1).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from cri_proxy.cli.options import (DbOption, LogLevel, LogLevelOption, db_or_argument, session_option, since_option,
                                   until_option)
from cri_proxy.cli.runner import execute
from cri_proxy.model.errors import ConfigError

if TYPE_CHECKING:
    import sqlite3

    from cri_proxy.recorder.spans import CallSpans, SpanOptions
    from cri_proxy.store.selection import Selection

BATCH = 256  # calls per round trip to the collector (the exporter's batch is 512: one export each)


@dataclass
class Exported:
    calls: int = 0  # calls read
    made: int = 0  # spans made of them
    exported: int = 0  # spans the collector accepted
    dropped: int = 0
    hosts: dict[str, CallSpans] = field(default_factory=dict)


def _hostnames(conn: sqlite3.Connection) -> dict[int, str]:
    return {int(i): str(h or "") for i, h in conn.execute("SELECT id, hostname FROM sessions")}


def _spans_for(state: Exported, options: SpanOptions, host: str) -> CallSpans:
    from dataclasses import replace

    from cri_proxy.recorder.spans import CallSpans

    spans = state.hosts.get(host)
    if spans is None:
        spans = state.hosts[host] = CallSpans(replace(options, host_name=host or None))
    return spans


def _tally(state: Exported) -> None:
    counts = [s.counts() for s in state.hosts.values()]
    state.made, state.exported = sum(c.made for c in counts), sum(c.exported for c in counts)
    state.dropped = sum(c.dropped for c in counts)


def send(conn: sqlite3.Connection, selection: Selection, options: SpanOptions, progress: TextIO) -> Exported:
    """Exports the selected calls; ConfigError when the collector takes none of the first batch."""
    from cri_proxy.recorder.telemetry import FACT_NAMES
    from cri_proxy.store import reader
    from cri_proxy.store.selection import check_session

    check_session(conn, selection.session)
    total = reader.summarize(conn, selection).count
    hosts = _hostnames(conn)
    where, args = selection.sql_where()
    state = Exported()
    calls = reader.read_calls(conn, where.removeprefix(" WHERE ") or "1", args, order="c.started_unix, c.id")
    try:
        for stored in calls:
            facts = {FACT_NAMES[k]: v for k, v in stored.ids.items() if v and k in FACT_NAMES}
            _spans_for(state, options, hosts.get(stored.session_id, "")).observe(stored.call, facts)
            state.calls += 1
            if state.calls % BATCH == 0:
                _flush(state, progress, total, options)
        if state.calls % BATCH or not state.calls:
            _flush(state, progress, total, options)
    finally:
        for spans in state.hosts.values():
            spans.close()
        _tally(state)
    return state


def _flush(state: Exported, progress: TextIO, total: int, options: SpanOptions) -> None:
    for spans in state.hosts.values():
        spans.flush()
    _tally(state)
    if state.made and not state.exported:
        raise ConfigError(f"the collector at {options.endpoint} took none of the first {state.made} spans "
                          "(is it running? see the log above)")
    progress.write(f"export: {state.calls}/{total} calls, {state.exported} spans sent\n")
    progress.flush()


def export(
    ctx: typer.Context,
    db_argument: Optional[Path] = typer.Argument(None, metavar="[DB]", help="The recording (read only); the same "
                                                 "as --db, which also reads $CRI_PROXY_DB."),
    db: DbOption = None,
    otlp_endpoint: str = typer.Option(..., "--otlp-endpoint", metavar="URL", help="The collector, e.g. "
                                      "http://127.0.0.1:4317 (OTLP/gRPC) or .../v1/traces with --otlp-protocol."),
    otlp_protocol: Optional[str] = typer.Option(None, "--otlp-protocol", help="grpc or http/protobuf "
                                                "[default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc]."),
    session: Annotated[Optional[int], session_option()] = None,
    since: Annotated[Optional[str], since_option()] = None,
    until: Annotated[Optional[str], until_option()] = None,
    log_level: LogLevelOption = LogLevel.warning,
) -> None:
    """Send a recording's calls as OpenTelemetry spans to a collector, as the live proxy would have."""

    def main() -> int:
        from cri_proxy.cli.replay import selection
        from cri_proxy.recorder.spans import SpanOptions
        from cri_proxy.store.readonly import Recording

        options = SpanOptions(endpoint=otlp_endpoint, protocol=otlp_protocol, trace_sample_ratio=1.0)
        options.check()
        recording = Recording(db_or_argument(ctx, db_argument, db))
        try:
            done = send(recording.conn, selection(session, since, until, None), options, sys.stderr)
        finally:
            recording.close()
        unsampled = done.calls - done.made
        typer.echo(f"exported {done.exported} spans of {done.calls} calls to {otlp_endpoint}"
                   + (f" ({unsampled} not sampled by their traceparent)" if unsampled else "")
                   + (f"; {done.dropped} spans LOST" if done.dropped else ""))
        return 1 if done.dropped else 0

    execute(main, log_level)


def register(app: typer.Typer) -> None:
    """Adds `export` to the `cri-proxy` app."""
    app.command("export")(export)
