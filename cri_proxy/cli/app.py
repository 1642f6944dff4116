"""The `cri-proxy` command line: one typer app that every command registers itself with.
Shared options live in cli/options.py, and every command runs through cli/runner.py, the
only place that configures logging, picks the event loop and maps errors to exit codes."""

from __future__ import annotations

from typing import Annotated

import typer

from cri_proxy import __version__
from cri_proxy.cli import answers, datasette, export, faults, misc, node, query, replay, report, run
from cri_proxy.cli.options import LOG_LEVELS

__all__ = ["LOG_LEVELS", "app", "main"]

app = typer.Typer(
    name="cri-proxy",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click output: a wrong flag is a short usage line, not a panel
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cri-proxy {__version__}")
        raise typer.Exit()


@app.callback()
def cri_proxy(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """A transparent proxy between the kubelet and a container runtime's CRI sockets."""


run.register(app)
query.register(app)  # query, tail, stats
replay.register(app)  # replay, serve
node.register(app)  # install, uninstall, doctor
export.register(app)
misc.register(app)  # fake-runtime, demo, snapshot, version
datasette.register(app)  # datasette-metadata
faults.register(app)  # faults check
answers.register(app)  # pod, health
report.register(app)  # report


def main() -> None:
    app(prog_name="cri-proxy")
