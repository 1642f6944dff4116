"""`cri-proxy run`: the node daemon's command line. It only turns flags into a ProxyConfig
(with RecordConfig and BridgeOptions) and hands it to cri_proxy.proxy.daemon.serve through
the runner; the proxy, the recorder and the bridge are imported when the command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cri_proxy.cli.config import CONTEXT, config_option
from cri_proxy.cli.options import CgroupDriver, LogLevel, LogLevelOption, UpstreamApi, choice_option, db_option
from cri_proxy.cli.runner import EXIT_ERROR, execute, fail
from cri_proxy.model.endpoints import unix_path


def _mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise typer.BadParameter(f"{value!r} is not a permission mode (0000 to 0777)")
    return mode


RECORD_HELP = "Record every call to this SQLite file (created mode 0600). Without it, nothing is recorded."


def run(
    config: Optional[Path] = config_option(),
    listen: str = typer.Option(..., help="Socket the kubelet connects to, e.g. unix:///run/cri-proxy/cri.sock."),
    runtime_endpoint: str = typer.Option(
        ..., "--runtime-endpoint", "--container-runtime-endpoint",
        help="The runtime's socket, e.g. unix:///run/containerd/containerd.sock (the kubelet's flag name works too)."),
    image_endpoint: Optional[str] = typer.Option(
        None, "--image-endpoint", "--image-service-endpoint",
        help="Socket for ImageService calls when it differs from --runtime-endpoint."),
    socket_mode: str = typer.Option("0660", help="Permission mode of the listen socket (octal)."),
    socket_group: Optional[str] = typer.Option(None, help="Group (name or gid) that owns the listen socket."),
    grace_period: float = typer.Option(10.0, min=0, help="Seconds open calls get to finish on SIGTERM/SIGINT."),
    wait_for_upstream: float = typer.Option(
        0.0, min=0, help="Seconds to wait at start for the runtime socket to appear (0: fail at once)."),
    log_level: LogLevelOption = LogLevel.info,
    db: Annotated[Optional[Path], db_option(RECORD_HELP)] = None,
    require_recording: bool = typer.Option(
        False, help="Refuse to start, and refuse new connections, while calls cannot be recorded (audits)."),
    recorder_start_wait: float = typer.Option(
        5.0, min=0, help="Seconds the proxy waits at start for the recorder to open --db (its integrity check and "
                         "migrations) before it listens anyway; with --require-recording it waits up to 600 s."),
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
    upstream_api: Annotated[UpstreamApi, choice_option(
        "--upstream-api", UpstreamApi,
        "CRI version the runtime speaks: auto (ask it, again after every reconnect), v1 or v1alpha2.")] = UpstreamApi.auto,
    cgroup_driver: Annotated[Optional[CgroupDriver], choice_option(
        "--cgroup-driver", CgroupDriver,
        "Answer RuntimeConfig with this driver (systemd or cgroupfs) when the runtime cannot.")] = None,
    emulate_events: bool = typer.Option(
        False, help="Emulate GetContainerEvents by relisting, for runtimes that lack it (v1alpha2, containerd 1.6)."),
    events_period: float = typer.Option(1.0, help="Seconds between relists when emulating events."),
    strict_translation: bool = typer.Option(
        False, help="Refuse (FAILED_PRECONDITION) security-relevant v1-only fields a v1alpha2 runtime would ignore."),
    metrics_listen: Optional[str] = typer.Option(
        None, metavar="HOST:PORT|unix:///PATH",
        help="Serve Prometheus /metrics, /healthz and /readyz here, e.g. 127.0.0.1:9464 (works without --db)."),
    otlp_endpoint: Optional[str] = typer.Option(
        None, metavar="URL",
        help="Send OpenTelemetry spans of traced calls here over OTLP, e.g. http://127.0.0.1:4317 (works without --db)."),
    trace_sample_ratio: float = typer.Option(
        0.0, help="With --otlp-endpoint: share (0 to 1) of calls without a sampled traceparent that get a root span."),
    faults: Optional[Path] = typer.Option(
        None, metavar="FILE",
        help="Apply these fault rules (YAML or JSON, see examples/faults/) to the relayed calls; reloaded on SIGHUP."),
    control: Optional[str] = typer.Option(
        None, metavar="unix:///PATH",
        help="Serve a control socket (mode 0600) here: `cri-proxy faults list|add|remove|clear` change the "
             "fault rules while the proxy runs (with or without --faults)."),
) -> None:
    """Relay every call between the listen socket and the runtime, byte for byte (and record them with --db).

    Every flag can also be given as a CRI_PROXY_* variable (CRI_PROXY_RUNTIME_ENDPOINT, values of a
    repeatable flag separated by spaces) or as a key of the --config file; a flag wins over the
    variable, the variable over the file.
    """
    if events_period <= 0:
        raise typer.BadParameter("must be more than 0", param_hint="--events-period")
    mode = _mode(socket_mode)

    def main() -> Any:
        from cri_proxy.bridge import BridgeOptions
        from cri_proxy.model.options import RecordConfig, TelemetryConfig
        from cri_proxy.faults.rules import FaultRulesError, load_rules
        from cri_proxy.proxy.daemon import ProxyConfig, serve

        if faults is not None:  # checked here, so that each problem is a line of its own
            try:
                load_rules(faults)
            except FaultRulesError as exc:
                for line in exc.problems:
                    fail(line)
                return EXIT_ERROR

        telemetry = TelemetryConfig(metrics_listen=metrics_listen, otlp_endpoint=otlp_endpoint,
                                    trace_sample_ratio=trace_sample_ratio)
        telemetry.check()
        # Without --db but with metrics or spans, the recorder process runs with no writer.
        record = None if db is None and not telemetry.enabled else RecordConfig(
            db=db.absolute() if db is not None else None, telemetry=telemetry, require=require_recording, start_wait_s=recorder_start_wait, flush_interval_s=flush_interval, queue_calls=queue_calls,
            queue_mb=queue_mb, max_payload_kb=max_payload_kb, retain=retain, max_db_mb=max_db_mb,
            include=tuple(include), exclude=tuple(exclude), sample=tuple(sample), redact=tuple(redact),
            no_redact=tuple(no_redact), redact_labels=tuple(redact_label),
            keep_registry_credentials_in_clear=keep_registry_credentials_in_clear)  # fmt: skip
        if record is not None:
            record.check()
        translation = BridgeOptions(
            upstream_api=upstream_api.value, cgroup_driver=None if cgroup_driver is None else cgroup_driver.value,
            emulate_events=emulate_events, events_period=events_period, strict=strict_translation)  # fmt: skip
        listen_path = unix_path(listen, "--listen")
        control_path = unix_path(control, "--control") if control else None
        if control_path is not None and control_path == listen_path:
            return fail("--control must be a socket of its own, not the --listen socket")
        return serve(ProxyConfig(
            listen=listen_path,
            runtime=unix_path(runtime_endpoint, "--runtime-endpoint"),
            image=unix_path(image_endpoint, "--image-endpoint") if image_endpoint else None,
            socket_mode=mode,
            socket_group=socket_group,
            grace_period=grace_period,
            wait_for_upstream=wait_for_upstream,
            record=record,
            translation=translation,
            faults=faults.absolute() if faults is not None else None,
            control=control_path,
        ))

    execute(main, log_level)


def register(app: typer.Typer) -> None:
    """Adds `run` to the `cri-proxy` app."""
    app.command("run", context_settings=CONTEXT)(run)
