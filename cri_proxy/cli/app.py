"""The `cri-proxy` command line. The only place that configures logging or turns errors into exit codes."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import sys
from collections.abc import Coroutine
from typing import Any, Optional

import typer

from cri_proxy import __version__
from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import CriProxyError

app = typer.Typer(
    name="cri-proxy",
    help="A transparent proxy between the kubelet and a container runtime's CRI sockets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click output: a wrong flag is a short usage line, not a panel
)

LOG_LEVELS = ("debug", "info", "warning", "error")


def _setup_logging(level: str) -> None:
    if level not in LOG_LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LOG_LEVELS)}", param_hint="--log-level")
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _run(coro: Coroutine[Any, Any, int]) -> None:
    """Run `coro` on uvloop where available; a CriProxyError becomes one line and exit status 2."""
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    try:
        code = runner(coro)
    except CriProxyError as exc:
        typer.echo(f"cri-proxy: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


def _mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise typer.BadParameter(f"{value!r} is not a permission mode (0000 to 0777)")
    return mode


@app.command()
def run(
    listen: str = typer.Option(..., help="Socket the kubelet connects to, e.g. unix:///run/cri-proxy/cri.sock."),
    runtime_endpoint: str = typer.Option(..., help="The runtime's socket, e.g. unix:///run/containerd/containerd.sock."),
    image_endpoint: Optional[str] = typer.Option(
        None, help="Socket for ImageService calls when it differs from --runtime-endpoint."),
    socket_mode: str = typer.Option("0660", help="Permission mode of the listen socket (octal)."),
    socket_group: Optional[str] = typer.Option(None, help="Group (name or gid) that owns the listen socket."),
    grace_period: float = typer.Option(10.0, min=0, help="Seconds open calls get to finish on SIGTERM/SIGINT."),
    wait_for_upstream: float = typer.Option(
        0.0, min=0, help="Seconds to wait at start for the runtime socket to appear (0: fail at once)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    db: Optional[pathlib.Path] = typer.Option(
        None, help="Record every call to this SQLite file (created mode 0600). Without it, nothing is recorded."),
    require_recording: bool = typer.Option(
        False, help="Refuse to start, and refuse new connections, while calls cannot be recorded (audits)."),
    flush_interval: float = typer.Option(
        0.1, help="Seconds between batch writes: the most a kill -9 can lose."),
    queue_calls: int = typer.Option(10_000, help="Calls the in-memory queue holds before it counts losses."),
    queue_mb: int = typer.Option(64, help="Megabytes the in-memory queue holds before it counts losses."),
    max_payload_kb: int = typer.Option(
        1024, help="Message bodies larger than this keep only their size and sha256."),
    retain: Optional[str] = typer.Option(None, help="Prune calls older than this while running, e.g. 7d, 12h."),
    max_db_mb: Optional[int] = typer.Option(
        None, help="Keep the database under this size: the oldest calls are pruned from 80% of it."),
    include: list[str] = typer.Option([], help="Record only methods matching this glob (repeatable)."),
    exclude: list[str] = typer.Option([], help="Do not record methods matching this glob (repeatable)."),
    sample: list[str] = typer.Option(
        [], help="GLOB=FRACTION: keep that share of a method's calls; errors and changes always kept (repeatable)."),
    redact: list[str] = typer.Option([], help="Also redact: exec-output, exec-cmd, annotations (repeatable)."),
    no_redact: list[str] = typer.Option([], help="Stop redacting: env (container environment values)."),
    redact_label: list[str] = typer.Option([], help="Redact the values of labels whose key matches this glob."),
    keep_registry_credentials_in_clear: bool = typer.Option(
        False, help="Store PullImage registry credentials unredacted (never do this on a real node)."),
    upstream_api: str = typer.Option(
        "auto", help="CRI version the runtime speaks: auto (ask it, again after every reconnect), v1 or v1alpha2."),
    cgroup_driver: Optional[str] = typer.Option(
        None, help="Answer RuntimeConfig with this driver (systemd or cgroupfs) when the runtime cannot."),
    emulate_events: bool = typer.Option(
        False, help="Emulate GetContainerEvents by relisting, for runtimes that lack it (v1alpha2, containerd 1.6)."),
    events_period: float = typer.Option(1.0, help="Seconds between relists when emulating events."),
    strict_translation: bool = typer.Option(
        False, help="Refuse (FAILED_PRECONDITION) security-relevant v1-only fields a v1alpha2 runtime would ignore."),
) -> None:
    """Relay every call between the listen socket and the runtime, byte for byte (and record them with --db)."""
    from cri_proxy.proxy.daemon import ProxyConfig, serve
    from cri_proxy.model.options import RecordConfig

    _setup_logging(log_level)
    record = None if db is None else RecordConfig(
        db=db.absolute(), require=require_recording, flush_interval_s=flush_interval, queue_calls=queue_calls,
        queue_mb=queue_mb, max_payload_kb=max_payload_kb, retain=retain, max_db_mb=max_db_mb,
        include=tuple(include), exclude=tuple(exclude), sample=tuple(sample), redact=tuple(redact),
        no_redact=tuple(no_redact), redact_labels=tuple(redact_label),
        keep_registry_credentials_in_clear=keep_registry_credentials_in_clear)
    try:
        if record is not None:
            record.check()
        translation = _translation(upstream_api, cgroup_driver, emulate_events, events_period, strict_translation)
        config = ProxyConfig(
            listen=unix_path(listen, "--listen"),
            runtime=unix_path(runtime_endpoint, "--runtime-endpoint"),
            image=unix_path(image_endpoint, "--image-endpoint") if image_endpoint else None,
            socket_mode=_mode(socket_mode),
            socket_group=socket_group,
            grace_period=grace_period,
            wait_for_upstream=wait_for_upstream,
            record=record,
            translation=translation,
        )
    except CriProxyError as exc:
        typer.echo(f"cri-proxy: error: {exc}", err=True)
        raise typer.Exit(2) from None
    _run(serve(config))


def _translation(upstream_api: str, cgroup_driver: Optional[str], emulate_events: bool, events_period: float,
                 strict: bool) -> Any:
    from cri_proxy.bridge import BridgeOptions

    if upstream_api not in ("auto", "v1", "v1alpha2"):
        raise typer.BadParameter("must be auto, v1 or v1alpha2", param_hint="--upstream-api")
    if cgroup_driver not in (None, "systemd", "cgroupfs"):
        raise typer.BadParameter("must be systemd or cgroupfs", param_hint="--cgroup-driver")
    if events_period <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--events-period")
    return BridgeOptions(upstream_api=upstream_api, cgroup_driver=cgroup_driver,  # type: ignore[arg-type]
                         emulate_events=emulate_events, events_period=events_period, strict=strict)


@app.command("fake-runtime")
def fake_runtime(
    listen: str = typer.Option(..., help="Socket to serve on, e.g. unix:///tmp/fake-runtime.sock."),
    api: str = typer.Option("both", help="CRI versions to serve: v1, v1alpha2 or both (like containerd 1.6)."),
    cgroup_driver: str = typer.Option("systemd", help="What RuntimeConfig reports: systemd or cgroupfs."),
    container_events: bool = typer.Option(
        True, help="Serve GetContainerEvents (--no-container-events answers UNIMPLEMENTED, as containerd 1.6)."),
    populate_containers: int = typer.Option(0, min=0, help="Running containers to create at start."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Serve the stand-in runtime: in-memory pods, containers and images, no root needed."""
    from cri_proxy.fakeruntime import run_fake_runtime

    _setup_logging(log_level)
    if api not in ("v1", "v1alpha2", "both"):
        raise typer.BadParameter("must be v1, v1alpha2 or both", param_hint="--api")
    if cgroup_driver not in ("systemd", "cgroupfs"):
        raise typer.BadParameter("must be systemd or cgroupfs", param_hint="--cgroup-driver")
    try:
        path = unix_path(listen, "--listen")
    except CriProxyError as exc:
        typer.echo(f"cri-proxy: error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def serve() -> int:
        await run_fake_runtime(f"unix://{path}", api, cgroup_driver=cgroup_driver,  # type: ignore[arg-type]
                               container_events=container_events, populate_containers=populate_containers)
        return 0

    _run(serve())


@app.command()
def demo(
    db: pathlib.Path = typer.Option(pathlib.Path("cri-proxy-demo.db"), help="Where to record (appended to)."),
    log_level: str = typer.Option("warning", help="debug, info, warning or error."),
) -> None:
    """Run the proxy in front of the stand-in runtime, drive it like a kubelet, record and query it (no runtime,
    no root)."""
    from cri_proxy.demo import run_demo

    _setup_logging(log_level)
    _run(run_demo(typer.echo, db))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(f"cri-proxy {__version__}")


def main() -> None:
    app()


def _register_subcommands() -> None:
    from cri_proxy.cli.query import register
    from cri_proxy.cli.replay import register as register_replay
    from cri_proxy.cli.node import register as register_node

    register(app)  # query, tail, stats
    register_replay(app)  # replay, serve
    register_node(app)  # install, uninstall, doctor


_register_subcommands()
