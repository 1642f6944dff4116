"""The answers an operator asks of a recording: `cri-proxy pod` (one pod's story as a
waterfall) and `cri-proxy health` (what is wrong on the node, worst first). `register(app)`
adds them. Like the other read commands they open the recording read-only; `health` exits
1 when it finds something unhealthy (query/health.py says what counts)."""

from __future__ import annotations

import enum
import sys
import time
from typing import Annotated, Optional

import typer

from cri_proxy.cli.options import DbOption, choice_option, read_db, since_option
from cri_proxy.cli.runner import execute


class AnswerFormat(str, enum.Enum):
    table = "table"
    json = "json"


FormatOption = Annotated[AnswerFormat, choice_option(
    "--format", AnswerFormat, "table (for people: a picture) or json (for scripts).")]


def pod(
    target: str = typer.Argument(..., metavar="POD",
                                 help="NAMESPACE/NAME, or a pod sandbox or container id (a unique prefix will do)."),
    db: DbOption = None,
    fmt: FormatOption = AnswerFormat.table,
) -> None:
    """Every call about one pod, in order: a waterfall of where its time went."""

    def main() -> None:
        from cri_proxy.query.pod import story, story_json
        from cri_proxy.store.readonly import Recording

        recording = Recording(read_db(db))
        try:
            result = story(recording.conn, target)
        finally:
            recording.close()
        if fmt is AnswerFormat.json:
            sys.stdout.write(story_json(result) + "\n")
        else:
            from cri_proxy.query.waterfall import render

            render(sys.stdout, result)

    execute(main)


def health(
    db: DbOption = None,
    since: Annotated[Optional[str], since_option(
        "The window: since then (1h, 30m, or a UTC time) [default: the recording's last hour].")] = None,
    fmt: FormatOption = AnswerFormat.table,
) -> None:
    """The node's health from its recording: relists (PLEG), slow and open calls, failing
    probes, error bursts, lost calls, upstream outages. Exit 1 when something is unhealthy."""

    def main() -> int:
        from cri_proxy.query import health as checks
        from cri_proxy.query.since import since_text
        from cri_proxy.store.readonly import Recording

        since_at = since_text(since) if since else None
        recording = Recording(read_db(db))
        try:
            win, findings = checks.check(recording.conn, since_at, time.time())
        finally:
            recording.close()
        (checks.write_json if fmt is AnswerFormat.json else checks.write_text)(sys.stdout, win, findings)
        return 1 if checks.unhealthy(findings) else 0

    execute(main)


def register(app: typer.Typer) -> None:
    """Adds `pod` and `health` to the `cri-proxy` app."""
    app.command("pod")(pod)
    app.command("health")(health)
