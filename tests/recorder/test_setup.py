"""cri_proxy/recorder/setup.py: recording as `cri-proxy run` configures it, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError, StorageError
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.setup import make_recorder, policies
from tests.helpers.calls import make_call, rows, version_call

pytestmark = pytest.mark.timeout(30)


def test_policies_follow_the_flags(tmp_path: Path) -> None:
    keep, redaction = policies(RecordConfig(db=tmp_path / "c.db", exclude=("List*",), redact=("exec-output",),
                                            redact_labels=("*secret*",)))
    assert keep.describe() == "not List*"
    assert redaction.exec_output and redaction.label_globs == ("*secret*",)


def test_the_recorder_keeps_skips_and_writes_as_configured(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    recorder = make_recorder(RecordConfig(db=path, exclude=("ListContainers",)), SessionInfo())
    recorder.submit(make_call("ListContainers", {}, {}))
    recorder.submit(version_call(1))
    recorder.close()
    assert (recorder.stats.recorded, recorder.stats.skipped) == (1, 1)
    assert rows(path, "SELECT method FROM calls") == [("Version",)]


def test_bad_options_are_refused_before_any_file_is_made(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--queue-calls"):
        make_recorder(RecordConfig(db=tmp_path / "calls.db", queue_calls=0), SessionInfo())
    assert list(tmp_path.iterdir()) == []


def test_require_recording_refuses_a_file_that_cannot_be_written(tmp_path: Path) -> None:
    junk = tmp_path / "calls.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        make_recorder(RecordConfig(db=junk, require=True), SessionInfo())
