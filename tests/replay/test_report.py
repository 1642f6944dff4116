"""cri_proxy/replay/report.py: the terminal summary and the report file (JSON or HTML)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.replay.compare import Difference
from cri_proxy.replay.report import check_report_path, write_report, write_terminal
from cri_proxy.replay.results import CallResult, ReplayResult, Verdict


def replay(db_out: str | None = None) -> ReplayResult:
    found = ReplayResult(source="calls.db", target="unix:///run/t.sock", source_sessions=[1],
                         replay_session=2 if db_out else None, db_out=db_out, elapsed_s=1.5)
    found.results = [
        CallResult(1, "/runtime.v1.RuntimeService/Version", Verdict.MATCHED),
        CallResult(2, "/runtime.v1.RuntimeService/ContainerStatus", Verdict.DIFFERED, reason="1 field differs",
                   differences=[Difference("status.state", "RUNNING", "<b>EXITED</b>")]),
        CallResult(3, "/runtime.v1.RuntimeService/RemoveContainer", Verdict.SKIPPED, reason="state-changing"),
    ]
    return found


@pytest.mark.parametrize(("name", "kind"), [("r.json", "json"), ("R.HTML", "html"), ("r.htm", "html")])
def test_report_kind_from_the_name(name: str, kind: str) -> None:
    assert check_report_path(Path(name)) == kind


def test_another_name_is_refused_with_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--report r.txt: name the file .json or .html$"):
        check_report_path(Path("r.txt"))


def test_terminal_lists_differences_and_totals() -> None:
    out = io.StringIO()
    write_terminal(out, replay())
    text = out.getvalue()
    assert "call 2 ContainerStatus: differed: 1 field differs\n" in text
    assert "status.state: recorded" in text
    assert text.endswith("replayed 2 of 3 calls in 1.50 s: 1 matched, 1 differed, 0 failed, 1 skipped; "
                         "not recorded (give --db-out to record the replay)\n")


def test_report_files(tmp_path: Path) -> None:
    write_report(tmp_path / "r.json", replay("out.db"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["replay"] == {"db": "out.db", "session": 2}
    write_report(tmp_path / "r.html", replay())
    page = (tmp_path / "r.html").read_text()
    assert "&lt;b&gt;EXITED&lt;/b&gt;" in page and "<b>EXITED</b>" not in page  # escaped
    with pytest.raises(ConfigError, match="cannot write --report"):
        write_report(tmp_path / "absent" / "r.json", replay())
