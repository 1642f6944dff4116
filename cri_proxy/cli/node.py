"""The node commands: `cri-proxy install`, `uninstall` and `doctor`. `register(app)` adds them.

install and uninstall print every change (or, with --dry-run, every change they would make)
and the one command that puts it into effect; they never run systemctl themselves. --root
treats a folder as the node's / (tests, image builds). They run through cli/runner.py: errors
are one line and exit 2; doctor exits 1 when a check fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cri_proxy.cli.options import db_option
from cri_proxy.cli.runner import execute
from cri_proxy.model.errors import ConfigError
from cri_proxy.node import paths

ROOT_HELP = "Treat this folder as the node's / (for tests and image builds)."


def program() -> tuple[str, ...]:
    """The absolute command that runs this installation's cri-proxy: the console script beside
    the interpreter (a venv's bin/), else the interpreter with -m. Symlinks are not resolved:
    a venv's python must stay the venv's."""
    here = Path(os.path.abspath(sys.executable))
    script = here.parent / "cri-proxy"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (str(here), "-m", "cri_proxy")


def check_run_args(args: list[str]) -> None:
    """The generated `cri-proxy run` flags parse with the real command (a typo fails here, not
    at the node's next boot)."""
    from cri_proxy.cli import run

    # A one-command app of the real `run` (not cli.app, which imports this module).
    only_run = typer.Typer(add_completion=False)
    run.register(only_run)
    command = typer.main.get_command(only_run)
    args = list(args)
    if "--config" in args:  # install read and checked it already, under --root (not this machine's path)
        at = args.index("--config")
        del args[at:at + 2]
    try:
        command.make_context("run", args)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click and derives them from this)
        why = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise ConfigError(f"the proxy's flags do not parse: {why}") from None


# The `run` flags install writes into the unit itself; taken from --config when not given.
_FROM_CONFIG = ("runtime_endpoint", "image_endpoint", "listen", "db", "socket_mode", "socket_group", "grace_period")


def _from_config(ctx: typer.Context, node: paths.NodeRoot, config: str) -> dict[str, Any]:
    """What the --config file sets of the flags install writes, for those not given to install
    (the file is `run`'s: read and checked the way `run --config` reads it)."""
    from cri_proxy.cli import run
    from cri_proxy.cli.config import load

    only_run = typer.Typer(add_completion=False)
    run.register(only_run)
    if not config.startswith("/"):
        raise ConfigError(f"--config {config}: give the file's absolute path on the node")
    values = load(node.at(config), typer.main.get_command(only_run))
    return {name: values[name] for name in _FROM_CONFIG
            if name in values and getattr(ctx.get_parameter_source(name), "name", "") != "COMMANDLINE"}


def install(
    ctx: typer.Context,
    runtime_endpoint: Optional[str] = typer.Option(
        None, help="The runtime's socket [default: the one the kubelet dials now]."),
    image_endpoint: Optional[str] = typer.Option(None, help="Socket for ImageService calls, when it differs."),
    listen: Optional[str] = typer.Option(
        None, help="The proxy's socket [default: /run/cri-proxy/ + the runtime socket's name; for CRI-O "
                   "/run/cri-proxy/run/crio/crio.sock]."),
    db: Annotated[Path, db_option("Record calls to this file (node path).")] = Path(paths.DEFAULT_DB),
    no_db: bool = typer.Option(False, "--no-db", help="Do not record: a pure relay."),
    socket_mode: str = typer.Option("0660", help="Permission mode of the proxy's socket (octal)."),
    socket_group: Optional[str] = typer.Option(None, help="Group that owns the proxy's socket."),
    grace_period: float = typer.Option(10.0, min=0, help="Seconds open calls get to finish on stop."),
    proxy_arg: list[str] = typer.Option(
        [], help="Another `cri-proxy run` flag for the unit, e.g. --proxy-arg=--retain=7d (repeatable)."),
    via: str = typer.Option("auto", help="Point the kubelet at the proxy through: auto, config (its "
                                         "KubeletConfiguration file) or flags (KUBELET_EXTRA_ARGS)."),
    kubelet_config: str = typer.Option(paths.DEFAULT_KUBELET_CONFIG,
                                       help="The kubelet's config file when its --config flag is not found."),
    config: Optional[str] = typer.Option(
        None, "--config", metavar="FILE", help="The unit runs `cri-proxy run --config FILE` (a node path); its "
        "listen, runtime-endpoint, image-endpoint, db, socket-mode, socket-group and grace-period are install's "
        "defaults too."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every change and make none."),
    root: Path = typer.Option(Path("/"), help=ROOT_HELP),
) -> None:
    """Put the proxy in front of this node's runtime: its systemd unit, and the kubelet pointed at it."""

    def main() -> None:
        from cri_proxy.node.changes import apply, describe
        from cri_proxy.node.plan import InstallOptions, make_plan

        node = paths.NodeRoot(root.absolute())
        given = _from_config(ctx, node, config) if config is not None else {}
        flags: dict[str, Any] = {"runtime_endpoint": runtime_endpoint, "image_endpoint": image_endpoint, "listen": listen,
                 "db": None if no_db else str(db), "socket_mode": socket_mode, "socket_group": socket_group,
                 "grace_period": grace_period}
        if no_db:
            given.pop("db", None)
        chosen: dict[str, Any] = {**flags, **{k: (str(v) if k == "db" else v) for k, v in given.items()}}
        extra = ("--config", config, *proxy_arg) if config is not None else tuple(proxy_arg)
        opts = InstallOptions(program=program(), **chosen, extra_args=extra, via=via,
                              kubelet_config=kubelet_config)
        plan = make_plan(node, opts)
        check_run_args(plan.run_args)
        for note in plan.notes:
            typer.echo(note)
        typer.echo(f"Pointing the kubelet at {plan.listen} by {plan.method}.")
        if dry_run:
            typer.echo("Dry run: nothing is changed. These are the changes install would make:")
            for line in describe(plan):
                typer.echo(line)
        else:
            for line in apply(node, plan):
                typer.echo(line)
        typer.echo(f"{'Then' if dry_run else 'Now'} put it into effect: {plan.restart}")

    execute(main)


def uninstall(
    force: bool = typer.Option(False, "--force", help="Revert even files that changed since install."),
    root: Path = typer.Option(Path("/"), help=ROOT_HELP),
) -> None:
    """Revert exactly what `cri-proxy install` did, from its manifest and backups."""

    def main() -> None:
        from cri_proxy.node.changes import revert

        for line in revert(paths.NodeRoot(root.absolute()), force=force):
            typer.echo(line)
        typer.echo("Now put it into effect: systemctl daemon-reload && systemctl restart kubelet && "
                   "systemctl stop cri-proxy")

    execute(main)


def doctor(
    kubelet_config: str = typer.Option(paths.DEFAULT_KUBELET_CONFIG,
                                       help="The kubelet's config file when its --config flag is not found."),
    root: Path = typer.Option(Path("/"), help=ROOT_HELP),
) -> None:
    """Check this node: is the kubelet dialing the proxy, and are the proxy, runtime and recording alive?"""

    def main() -> int:
        from cri_proxy.node.doctor import FAIL, diagnose

        checks = diagnose(paths.NodeRoot(root.absolute()), kubelet_config)
        for check in checks:
            typer.echo(f"{check.status.upper():4}  {check.name}: {check.detail}")
            if check.fix:
                typer.echo(f"      fix: {check.fix}")
        failed = sum(c.status == FAIL for c in checks)
        typer.echo(f"{len(checks)} checks, {failed} failed" if failed else f"{len(checks)} checks, none failed")
        return 1 if failed else 0

    execute(main)


def register(app: typer.Typer) -> None:
    """Adds `install`, `uninstall` and `doctor` to the `cri-proxy` app."""
    app.command()(install)
    app.command()(uninstall)
    app.command()(doctor)
