"""The smaller commands: `fake-runtime` (the stand-in runtime), `demo`, `snapshot` and
`version`. `register(app)` adds them to the main typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cri_proxy import __version__
from cri_proxy.cli.options import (
    CgroupDriver,
    FakeApi,
    LogLevel,
    LogLevelOption,
    choice_option,
    db_option,
    session_option,
    since_option,
    time_range,
    until_option,
)
from cri_proxy.cli.runner import execute
from cri_proxy.model.endpoints import unix_path
from cri_proxy.model.errors import ConfigError


def fake_runtime(
    listen: str = typer.Option(..., help="Socket to serve on, e.g. unix:///tmp/fake-runtime.sock."),
    api: Annotated[FakeApi, choice_option(
        "--api", FakeApi, "CRI versions to serve: v1, v1alpha2 or both (like containerd 1.6).")] = FakeApi.both,
    cgroup_driver: Annotated[CgroupDriver, choice_option(
        "--cgroup-driver", CgroupDriver, "What RuntimeConfig reports: systemd or cgroupfs.")] = CgroupDriver.systemd,
    container_events: bool = typer.Option(
        True, help="Serve GetContainerEvents (--no-container-events answers UNIMPLEMENTED, as containerd 1.6)."),
    populate_containers: int = typer.Option(0, min=0, help="Running containers to create at start."),
    log_level: LogLevelOption = LogLevel.info,
) -> None:
    """Serve the stand-in runtime: in-memory pods, containers and images, no root needed."""

    async def main() -> int:
        from cri_proxy.fakeruntime import run_fake_runtime

        path = unix_path(listen, "--listen")
        await run_fake_runtime(f"unix://{path}", api.value, cgroup_driver=cgroup_driver.value,
                               container_events=container_events, populate_containers=populate_containers)
        return 0

    execute(main, log_level)


def demo(
    db: Annotated[Path, db_option("Where to record (appended to).")] = Path("cri-proxy-demo.db"),
    log_level: LogLevelOption = LogLevel.warning,
) -> None:
    """Run the proxy in front of the stand-in runtime, drive it like a kubelet, record and query it (no runtime,
    no root)."""

    def main() -> Any:
        from cri_proxy.demo import run_demo

        return run_demo(typer.echo, db)

    execute(main, log_level)


def snapshot(
    src: Path = typer.Argument(..., metavar="SRC", help="The recording to copy (read only; the proxy may be writing it)."),
    dest: Path = typer.Argument(..., metavar="DEST", help="Where to write the copy, a new SQLite file."),
    since: Annotated[Optional[str], since_option()] = None,
    until: Annotated[Optional[str], until_option()] = None,
    session: Annotated[Optional[int], session_option()] = None,
) -> None:
    """Copy a recording, live or not, into a new consistent file (optionally only some calls)."""

    def main() -> None:
        since_at, until_at = time_range(since, until)
        from cri_proxy.store.snapshot import snapshot as copy_recording  # sqlite3: only when asked for

        done = copy_recording(src, dest, since=since_at, until=until_at, session=session)
        left_out = f", {done.calls_left_out} left out" if done.calls_left_out else ""
        typer.echo(f"{done.dest}: {done.calls} calls of {done.sessions} session(s){left_out}, "
                   f"schema version {done.schema_version}, {done.size_bytes} bytes")

    execute(main)


def version() -> None:
    """Print the version."""
    typer.echo(f"cri-proxy {__version__}")


def register(app: typer.Typer) -> None:
    """Adds `fake-runtime`, `demo` and `version` to the `cri-proxy` app."""
    app.command("fake-runtime")(fake_runtime)
    app.command("demo")(demo)
    app.command("snapshot")(snapshot)
    app.command("version")(version)
