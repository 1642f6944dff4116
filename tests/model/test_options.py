"""cri_proxy/model/options.py: recording flags parsed and validated before anything starts."""

from __future__ import annotations

import pathlib

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.model.options import (
    RecordConfig,
    RecorderOptions,
    config_json,
    parse_duration,
    parse_sample,
    redaction_switches,
)

DB = pathlib.Path("calls.db")


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
