"""The `cri-proxy` command line: one typer app that every command registers itself with.
Shared options live in cli/options.py, and every command runs through cli/runner.py, the
only place that configures logging, picks the event loop and maps errors to exit codes."""

from __future__ import annotations

import typer

from cri_proxy.cli import misc, query, replay, run
from cri_proxy.cli.options import LOG_LEVELS

__all__ = ["LOG_LEVELS", "app", "main"]

app = typer.Typer(
    name="cri-proxy",
    help="A transparent proxy between the kubelet and a container runtime's CRI sockets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click output: a wrong flag is a short usage line, not a panel
)


run.register(app)
query.register(app)  # query, tail, stats
replay.register(app)  # replay, serve
misc.register(app)  # fake-runtime, demo, version


def main() -> None:
    app(prog_name="cri-proxy")
