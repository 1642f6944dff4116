"""Recording as `cri-proxy run` configures it: options in, a started Recorder and tap out."""

from __future__ import annotations

import functools
import logging
import pathlib
from dataclasses import asdict, dataclass
from typing import Any

from cri_proxy.model.errors import ConfigError
from cri_proxy.recorder.keep import KeepPolicy
from cri_proxy.recorder.recorder import Recorder, RecorderOptions
from cri_proxy.recorder.redact import RedactionPolicy, redact_call
from cri_proxy.recorder.tap import RecordingTap
from cri_proxy.recorder.writer import SessionInfo

log = logging.getLogger(__name__)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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


@dataclass(frozen=True)
class RecordConfig:
    db: pathlib.Path
    require: bool = False
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

    def check(self) -> tuple[KeepPolicy, RedactionPolicy, RecorderOptions]:
        """Validate everything before anything starts; ConfigError names the flag."""
        keep = KeepPolicy.from_options(list(self.include), list(self.exclude), list(self.sample))
        try:
            redaction = RedactionPolicy.from_options(
                redact=self.redact, no_redact=self.no_redact, label_globs=self.redact_labels,
                keep_registry_credentials_in_clear=self.keep_registry_credentials_in_clear)
        except ValueError as exc:
            raise ConfigError(f"--redact/--no-redact: {exc}") from None
        if self.flush_interval_s <= 0 or self.queue_calls < 1 or self.queue_mb < 1 or self.max_payload_kb < 0:
            raise ConfigError("--flush-interval, --queue-calls and --queue-mb must be positive")
        retain_bytes = None
        hard_cap = None
        if self.max_db_mb is not None:
            if self.max_db_mb < 1:
                raise ConfigError("--max-db-mb must be at least 1")
            hard_cap = self.max_db_mb << 20
            retain_bytes = hard_cap * 8 // 10  # prune early, so the hard cap is never what stops a write
        options = RecorderOptions(
            max_queue_calls=self.queue_calls, max_queue_bytes=self.queue_mb << 20,
            flush_interval_s=self.flush_interval_s, max_payload_bytes=self.max_payload_kb << 10,
            retain_s=parse_duration(self.retain, "--retain") if self.retain else None,
            retain_bytes=retain_bytes, max_database_bytes=hard_cap)
        return keep, redaction, options


def make_recorder(config: RecordConfig, session: SessionInfo, thread: bool = True) -> Recorder:
    """Open the database and start the writer (see Recorder.start for `thread`). Fails open
    unless --require-recording."""
    keep, redaction, options = config.check()
    recorder = Recorder(config.db, session, options,
                        redact=functools.partial(redact_call, policy=redaction), keep=keep.keep)
    recorder.start(strict=config.require, thread=thread)
    log.info("recording %s; %s; %s", keep.describe(), redaction.describe(),
             "calls are refused while recording fails (--require-recording)" if config.require
             else "recording fails open: a recording fault never fails a CRI call")
    return recorder


def start_recording(config: RecordConfig, session: SessionInfo) -> tuple[Recorder, RecordingTap]:
    """A recorder and its tap in this process (the demo; `run` uses a recorder process)."""
    recorder = make_recorder(config, session)
    return recorder, RecordingTap(recorder)


def config_json(config: object) -> dict[str, Any]:
    """The run's configuration as JSON-ready data for the session row."""
    def plain(value: Any) -> Any:
        if isinstance(value, pathlib.Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(config))  # type: ignore[call-overload]
