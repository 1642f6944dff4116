"""Parsed options (cri_proxy/model/options.py): the telemetry flags are checked before anything starts."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.model.options import RecordConfig, TelemetryConfig, parse_listen
from tests.helpers.cli import one_error_line, run_cli


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
