"""cri_proxy/report/build.py: the node report's data from a whole recording, every golden
schema version included (read in place, never written), and the page it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cri_proxy.model.errors import StorageError
from cri_proxy.report.build import gather, write_report
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.browser import page_data
from tests.helpers.calls import T0, lifecycle_calls, record
from tests.helpers.recordings import GOLDEN, file_sha256, golden_sums


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name for p in GOLDEN])
def test_every_golden_recording_gives_a_page(golden: Path, tmp_path: Path) -> None:
    written = write_report(golden, tmp_path / "r.html", Selection())
    assert file_sha256(golden) == golden_sums()[golden.name]  # read, never written
    data = page_data(tmp_path / "r.html")
    recording = Recording(golden)
    try:
        (count,) = recording.conn.execute("SELECT count(*) FROM calls").fetchone()
        (problems,) = recording.conn.execute("SELECT count(*) FROM problems").fetchone()
        sandboxes = {row[0] for row in recording.conn.execute("SELECT pod_sandbox_id FROM pod_lifecycle")}
    finally:
        recording.close()
    assert written.calls == data["window"]["calls"] == count > 0
    assert sum(m["calls"] for m in data["methods"]) == count
    assert data["problems"]["total"] == problems
    # every pod the pod_lifecycle view knows has a waterfall (v1 recorded no ids: none)
    assert sandboxes <= {w["key"] for w in data["pods"]["waterfalls"]}
    assert bool(sandboxes) == (golden.name != "schema-v1.db")
    assert data["slowest"] and all(str(row[0]) in data["calls"] for row in data["slowest"])


def test_the_data_of_a_lifecycle(tmp_path: Path) -> None:
    record(tmp_path / "r.db", lifecycle_calls())
    recording = Recording(tmp_path / "r.db")
    try:
        data = gather(recording, Selection(), source="r.db")
    finally:
        recording.close()
    assert data["kind"] == "node" and data["source"] == "r.db"
    assert data["window"] == {"calls": 13, "first": T0, "last": T0 + 134}
    assert data["axis"]["start"] <= T0 and data["axis"]["count"] <= 241
    assert [s[0] for s in data["sessions"]] == [1]
    assert data["slowest"][0][3] in ("RunPodSandbox", "StopContainer")
    assert {w["key"] for w in data["pods"]["waterfalls"]} == {"p1", "pod:shop/web"}
    assert data["relists"][0]["method"] == "ListContainers"
    # Calls that name only their container are put with its pod, in the errors and the slowest.
    not_found = next(g for g in data["problems"]["groups"] if g["method"] == "ContainerStatus")
    assert not_found["pods"] == 1
    stop = next(row for row in data["slowest"] if row[3] == "StopContainer")
    assert (stop[5], stop[6]) == ("shop/web", "c1")
    json.dumps(data, allow_nan=False)  # what the page embeds


def test_since_until_and_session_narrow_everything(tmp_path: Path) -> None:
    record(tmp_path / "r.db", lifecycle_calls())
    recording = Recording(tmp_path / "r.db")
    try:
        late = gather(recording, Selection(since=T0 + 100, until=T0 + 132), source="r.db")
        assert late["window"]["calls"] == 3  # StopContainer twice, RemoveContainer
        assert late["selection"] == "since 2027-01-15 08:01:40, until 2027-01-15 08:02:12"
        assert {m["method"] for m in late["methods"]} == {"StopContainer", "RemoveContainer"}
        assert gather(recording, Selection(session=1), source="r.db")["window"]["calls"] == 13
        with pytest.raises(StorageError, match="no session 7 in the recording"):
            gather(recording, Selection(session=7), source="r.db")
    finally:
        recording.close()


def test_an_empty_selection_still_gives_a_page(tmp_path: Path) -> None:
    record(tmp_path / "r.db", lifecycle_calls())
    written = write_report(tmp_path / "r.db", tmp_path / "r.html", Selection(since=T0 + 10_000))
    assert written.calls == 0 and page_data(tmp_path / "r.html")["window"]["calls"] == 0
