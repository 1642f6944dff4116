"""cri_proxy/model/options.py: recording and telemetry flags parsed and validated before anything starts."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.model.options import (
    RecordConfig,
    RecorderOptions,
    TelemetryConfig,
    config_json,
    parse_duration,
    parse_listen,
    parse_sample,
    redaction_switches,
)
from tests.helpers.cli import one_error_line, run_cli

DB = pathlib.Path("calls.db")


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("unix:///run/cri-proxy/metrics.sock") == "/run/cri-proxy/metrics.sock"


@pytest.mark.parametrize("telemetry,message", [
    (TelemetryConfig(metrics_listen="localhost"), "--metrics-listen 'localhost': expected HOST:PORT"),
    (TelemetryConfig(metrics_listen="unix://metrics.sock"), "needs an absolute path"),
    (TelemetryConfig(otlp_endpoint="http://127.0.0.1:4317", trace_sample_ratio=1.5), "must be from 0 to 1"),
    (TelemetryConfig(otlp_endpoint="127.0.0.1:4317"), "--otlp-endpoint '127.0.0.1:4317': expected http://"),
])  # fmt: skip
def test_bad_telemetry_options_are_one_clear_error(telemetry: TelemetryConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RecordConfig(db=None, telemetry=telemetry).check()


def test_telemetry_is_on_with_either_flag() -> None:
    assert not TelemetryConfig().enabled
    assert TelemetryConfig(metrics_listen="127.0.0.1:9464").enabled
    assert TelemetryConfig(otlp_endpoint="http://127.0.0.1:4317").enabled
    RecordConfig(db=None, telemetry=TelemetryConfig(metrics_listen="[::1]:9464", trace_sample_ratio=1.0)).check()


@pytest.mark.parametrize("args,message", [
    (["--metrics-listen", "9464"], "--metrics-listen '9464': expected HOST:PORT"),
    (["--otlp-endpoint", "http://127.0.0.1:4317", "--trace-sample-ratio", "-0.1"], "--trace-sample-ratio -0.1"),
])  # fmt: skip
def test_run_refuses_bad_telemetry_flags_with_exit_2(tmp_path: pathlib.Path, args: list[str], message: str) -> None:
    line = one_error_line(run_cli("run", "--listen", f"unix://{tmp_path}/p.sock",
                                  "--runtime-endpoint", f"unix://{tmp_path}/absent.sock", *args))
    assert message in line


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("12h", 43200),
                                               ("7d", 604800), ("2w", 1209600), ("30", 30), ("1.5m", 90)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "--retain") == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "m"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--retain .*expected a duration such as 90s"):
        parse_duration(text, "--retain")


@pytest.mark.parametrize("text", ["0", "0s", "-5m"])
def test_parse_duration_refuses_zero_and_less(text: str) -> None:
    with pytest.raises(ConfigError, match="must be more than zero"):
        parse_duration(text, "--retain")


def test_parse_sample_keeps_order_and_splits_on_the_last_equals() -> None:
    assert parse_sample(["List*=0.1", "a=b=1"]) == (("List*", 0.1), ("a=b", 1.0))


@pytest.mark.parametrize("item", ["List*", "=0.5", "List*=1.5", "List*=-0.1", "List*=half"])
def test_parse_sample_refuses_bad_rules(item: str) -> None:
    with pytest.raises(ConfigError, match=r"^--sample .*METHOD_GLOB=FRACTION"):
        parse_sample([item])


def test_redaction_switches() -> None:
    assert redaction_switches(["exec-output", "annotations"], ["env"]) == {
        "exec_output": True, "annotations": True, "env_values": False}
    with pytest.raises(ValueError, match="unknown redact option 'bogus'; known: annotations, exec-cmd, exec-output"):
        redaction_switches(["bogus"], [])
    with pytest.raises(ValueError, match="registry credentials are always redacted"):
        redaction_switches([], ["registry-auth"])


def test_check_defaults_give_the_default_limits() -> None:
    options = RecordConfig(db=DB).check()
    assert options.max_queue_calls == RecorderOptions().max_queue_calls
    assert options.max_queue_bytes == 64 << 20
    assert options.max_payload_bytes == 1024 << 10
    assert options.retain_s is None and options.max_database_bytes is None


def test_check_converts_units() -> None:
    options = RecordConfig(db=DB, queue_mb=2, max_payload_kb=0, retain="2h", max_db_mb=10).check()
    assert options.max_queue_bytes == 2 << 20
    assert options.max_payload_bytes == 0
    assert options.retain_s == 7200
    assert options.max_database_bytes == 10 << 20
    assert options.retain_bytes == (10 << 20) * 8 // 10  # pruning starts below the hard cap


@pytest.mark.parametrize(("config", "flag"), [
    (RecordConfig(db=DB, flush_interval_s=0), "--flush-interval"),
    (RecordConfig(db=DB, queue_calls=0), "--queue-calls"),
    (RecordConfig(db=DB, queue_mb=0), "--queue-mb"),
    (RecordConfig(db=DB, max_payload_kb=-1), "--max-payload-kb"),
    (RecordConfig(db=DB, max_db_mb=0), "--max-db-mb"),
    (RecordConfig(db=DB, retain="forever"), "--retain"),
    (RecordConfig(db=DB, sample=("List*=2",)), "--sample"),
    (RecordConfig(db=DB, redact=("nothing",)), "--redact/--no-redact"),
    (RecordConfig(db=DB, no_redact=("auth",)), "--redact/--no-redact"),
])
def test_check_names_the_bad_flag(config: RecordConfig, flag: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.check()
    assert str(caught.value).startswith(flag)
    assert "\n" not in str(caught.value)


def test_config_json_is_plain_data() -> None:
    data = config_json(RecordConfig(db=pathlib.Path("/tmp/x.db"), include=("Version",)))
    assert data["db"] == "/tmp/x.db"
    assert data["include"] == ["Version"]
    assert data["retain"] is None
