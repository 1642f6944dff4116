"""cri_proxy/replay/report.py: the terminal summary and the report file (JSON or HTML)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cri_proxy.fakeruntime import start_fake_runtime
from cri_proxy.model.errors import ConfigError
from cri_proxy.replay.compare import Difference
from cri_proxy.replay.report import check_report_path, write_report, write_terminal
from cri_proxy.replay.results import CallResult, ReplayResult, Verdict
from cri_proxy.replay.runner import ReplayOptions, run_replay
from tests.helpers.browser import chromium, load, page_data, pixels
from tests.helpers.recordings import Recorded


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
    assert "\\u003cb>EXITED\\u003c/b>" in page and "<b>EXITED</b>" not in page  # escaped: data, not markup
    with pytest.raises(ConfigError, match="cannot write --report"):
        write_report(tmp_path / "absent" / "r.json", replay())


def _many(differing: int, matched: int) -> ReplayResult:
    found = replay()
    found.results = [CallResult(i, "/runtime.v1.RuntimeService/ContainerStatus", Verdict.DIFFERED, reason="1 field differs",
                                differences=[Difference(f"containers[id={i:064x}].state", "RUNNING", "EXITED")])
                     for i in range(differing)]  # fmt: skip
    found.results += [CallResult(differing + i, "/runtime.v1.RuntimeService/ListContainers", Verdict.MATCHED,
                                 duration_ms=float(i % 7)) for i in range(matched)]  # fmt: skip
    found.results.append(CallResult(10**6, "/runtime.v1.RuntimeService/RemoveContainer", Verdict.SKIPPED,
                                    reason="state-changing"))  # fmt: skip
    return found


def test_the_page_lists_differences_first_and_summarises_the_rest(tmp_path: Path) -> None:
    write_report(tmp_path / "r.html", _many(differing=2500, matched=24_000))
    data = page_data(tmp_path / "r.html")
    assert data["kind"] == "replay"
    assert data["differing_count"] == 2500 and len(data["differing"]) == 2000  # the rest: by field, and in the JSON
    assert data["differing"][0][:3] == [0, "ContainerStatus", "differed"]
    assert data["fields"] == [["ContainerStatus", "containers[*].state", 2500, [0, 1, 2, 3, 4]]]
    assert data["matched"] == [["ListContainers", 24_000, 3.0, 6.0]]  # method, calls, p50, max (ms)
    assert data["skipped"] == [["RemoveContainer", "state-changing", 1, 10**6]]
    assert (tmp_path / "r.html").stat().st_size < 1_000_000  # 24k matched calls cost one row


async def test_a_real_replay_report_in_a_browser(sock_dir: Path, recording: Recorded, tmp_path: Path) -> None:
    chromium()
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        result = await run_replay(ReplayOptions(str(recording.db), target.address), lambda line: None)
    finally:
        await target.stop(0)
    write_report(tmp_path / "replay.html", result)
    loaded = load(tmp_path / "replay.html")
    assert loaded.errors == []
    assert loaded.requests == [(tmp_path / "replay.html").resolve().as_uri()]
    sections = loaded.drawn["sections"]
    assert sections[0] == "differences" and {"methods", "matched", "skipped"} <= set(sections)
    summary = result.summary()
    assert f"{summary['matched']} matched" in loaded.drawn["text"]
    assert len(pixels(loaded.screenshot)[2]) > 5
