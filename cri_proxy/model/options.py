"""Recording options, parsed once: units, sampling rules and redaction names checked here.

`cri-proxy run` builds a `RecordConfig` from its flags and calls `check()` before anything
starts, in the relay process: so the parsing is plain Python, and the recorder process
builds its policies (keep, redact) from the parsed values without parsing them again.
"""

from __future__ import annotations

import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from cri_proxy.model.errors import ConfigError

UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# --redact NAME widens redaction, --no-redact NAME narrows it: name -> policy attribute.
WIDEN_OPTIONS: Final = {"exec-output": "exec_output", "exec-cmd": "exec_cmd", "annotations": "annotations"}
NARROW_OPTIONS: Final = {"env": "env_values"}
_CREDENTIAL_NAMES: Final = ("auth", "registry-auth", "registry-credentials")

SampleRule = tuple[str, float]  # method glob, fraction kept


def parse_duration(text: str, what: str) -> float:
    """Seconds in '90s', '15m', '12h', '7d', '2w' (a bare number is seconds)."""
    value, unit = (text[:-1], text[-1]) if text and text[-1] in UNITS else (text, "s")
    try:
        seconds = float(value) * UNITS[unit]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected a duration such as 90s, 15m, 12h or 7d") from None
    if seconds <= 0:
        raise ConfigError(f"{what} {text!r}: must be more than zero")
    return seconds


def parse_sample(items: tuple[str, ...] | list[str]) -> tuple[SampleRule, ...]:
    """'List*=0.1' rules, in order (the first match wins)."""
    rules = []
    for item in items:
        pattern, sep, value = item.rpartition("=")
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not pattern or not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"--sample {item!r}: expected METHOD_GLOB=FRACTION with a fraction from 0 to 1, "
                              "e.g. 'List*=0.1'")
        rules.append((pattern, fraction))
    return tuple(rules)


def redaction_switches(redact: tuple[str, ...] | list[str], no_redact: tuple[str, ...] | list[str]) -> dict[str, bool]:
    """Policy attributes switched on (--redact) or off (--no-redact); ValueError for an unknown name."""
    switches: dict[str, bool] = {}
    for name in redact:
        switches[_option(name, WIDEN_OPTIONS, "redact")] = True
    for name in no_redact:
        if name in _CREDENTIAL_NAMES:
            raise ValueError("registry credentials are always redacted unless "
                             "keep_registry_credentials_in_clear is set explicitly")
        switches[_option(name, NARROW_OPTIONS, "no_redact")] = False
    return switches


def _option(name: str, known: dict[str, str], what: str) -> str:
    attr = known.get(name)
    if attr is None:
        raise ValueError(f"unknown {what} option {name!r}; known: {', '.join(sorted(known))}")
    return attr


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    """The recorder's limits and timings, in plain units."""

    max_queue_calls: int = 10_000
    max_queue_bytes: int = 64 << 20
    batch_max_calls: int = 500
    flush_interval_s: float = 0.1
    max_payload_bytes: int = 1 << 20  # per message; beyond it only size and sha256 are kept
    busy_timeout_s: float = 1.0
    retry_interval_s: float = 1.0
    max_attempts: int = 3  # writes of one batch before it is counted lost
    max_database_bytes: int | None = None
    close_timeout_s: float = 5.0
    retain_s: float | None = None  # prune calls older than this, while running
    retain_bytes: int | None = None  # prune the oldest calls while the data is larger than this
    prune_interval_s: float = 10.0


def parse_listen(listen: str, what: str = "--metrics-listen") -> tuple[str, int] | str:
    """(host, port) for `HOST:PORT`, a path for `unix:///path`; ConfigError for anything else."""
    if listen.startswith("unix://"):
        path = listen[len("unix://"):]
        if not path.startswith("/"):
            raise ConfigError(f"{what} {listen!r}: a unix socket needs an absolute path (unix:///...)")
        return path
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{what} {listen!r}: expected HOST:PORT (127.0.0.1:9464) or unix:///path")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """`cri-proxy run`'s metrics and tracing flags; the recorder process builds its peers from them."""

    metrics_listen: str | None = None  # HOST:PORT or unix:///path: serve /metrics, /healthz, /readyz
    otlp_endpoint: str | None = None  # where spans go (OTLP); None: no spans
    trace_sample_ratio: float = 0.0  # root spans for calls that carry no traceparent

    @property
    def enabled(self) -> bool:
        return self.metrics_listen is not None or self.otlp_endpoint is not None

    def check(self) -> None:
        if self.metrics_listen is not None:
            parse_listen(self.metrics_listen)
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ConfigError(f"--trace-sample-ratio {self.trace_sample_ratio:g}: must be from 0 to 1")
        if self.otlp_endpoint is not None and not self.otlp_endpoint.startswith(("http://", "https://", "unix:")):
            raise ConfigError(f"--otlp-endpoint {self.otlp_endpoint!r}: expected http://HOST:PORT, "
                              "https://HOST:PORT or unix:///path")


@dataclass(frozen=True)
class RecordConfig:
    """`cri-proxy run`'s recording flags as given; `check()` parses and validates them."""

    db: pathlib.Path | None  # None: no writer (the recorder process only feeds metrics and spans)
    require: bool = False
    start_wait_s: float = 5.0  # at start, for the recorder to open the database, before listening anyway
    flush_interval_s: float = 0.1
    queue_calls: int = 10_000
    queue_mb: int = 64
    max_payload_kb: int = 1024
    retain: str | None = None
    max_db_mb: int | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sample: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    no_redact: tuple[str, ...] = ()
    redact_labels: tuple[str, ...] = ()
    keep_registry_credentials_in_clear: bool = False
    telemetry: TelemetryConfig = field(default_factory=lambda: TelemetryConfig())

    @property
    def needs_bodies(self) -> bool:
        """Whether the recorder process needs the messages' bytes: the writer (--db) and the
        spans peer (--otlp-endpoint) read them; the metrics peer counts only their sizes, so
        for it alone the relay ships the lean form (proxy/lean.py, link.lean_data)."""
        return self.db is not None or self.telemetry.otlp_endpoint is not None

    def check(self) -> RecorderOptions:
        """Validate everything before anything starts; ConfigError names the flag."""
        self.telemetry.check()
        parse_sample(self.sample)
        try:
            redaction_switches(self.redact, self.no_redact)
        except ValueError as exc:
            raise ConfigError(f"--redact/--no-redact: {exc}") from None
        if self.flush_interval_s <= 0:
            raise ConfigError(f"--flush-interval {self.flush_interval_s:g}: must be more than 0 seconds")
        if self.queue_calls < 1:
            raise ConfigError(f"--queue-calls {self.queue_calls}: must be at least 1")
        if self.queue_mb < 1:
            raise ConfigError(f"--queue-mb {self.queue_mb}: must be at least 1")
        if self.max_payload_kb < 0:
            raise ConfigError(f"--max-payload-kb {self.max_payload_kb}: must be 0 (sizes only) or more")
        retain_bytes = None
        hard_cap = None
        if self.max_db_mb is not None:
            if self.max_db_mb < 1:
                raise ConfigError("--max-db-mb must be at least 1")
            hard_cap = self.max_db_mb << 20
            retain_bytes = hard_cap * 8 // 10  # prune early, so the hard cap is never what stops a write
        return RecorderOptions(
            max_queue_calls=self.queue_calls, max_queue_bytes=self.queue_mb << 20,
            flush_interval_s=self.flush_interval_s, max_payload_bytes=self.max_payload_kb << 10,
            retain_s=parse_duration(self.retain, "--retain") if self.retain else None,
            retain_bytes=retain_bytes, max_database_bytes=hard_cap)


def config_json(config: object) -> dict[str, Any]:
    """A run's configuration (a dataclass) as JSON-ready data for the session row."""
    def plain(value: Any) -> Any:
        if isinstance(value, pathlib.Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(config))  # type: ignore[call-overload]
