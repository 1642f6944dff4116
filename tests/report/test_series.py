"""cri_proxy/report/series.py: calls per bucket, latency percentiles and the relist rhythm,
from a real recording (the project's Recorder writes it)."""

from __future__ import annotations

from pathlib import Path

from cri_proxy.report.series import PLEG_LIMIT_S, read_series
from cri_proxy.report.timeaxis import axis_for
from cri_proxy.store.readonly import Recording
from cri_proxy.store.selection import Selection
from tests.helpers.calls import T0, make_call, record

# ListPodSandbox every second, then a stall of 200 s; Version calls with known durations.
RELISTS = [0.0, 1.0, 2.0, 3.0, 203.0, 204.0]
VERSIONS = [(10.0, 1.0), (11.0, 2.0), (12.0, 3.0), (150.0, 40.0)]


def _recording(tmp_path: Path) -> Path:
    calls = [make_call("ListPodSandbox", {}, {}, started=T0 + t, duration_ms=0.5 + t / 1000, stream_id=1 + i)
             for i, t in enumerate(RELISTS)]  # fmt: skip
    calls += [make_call("Version", {}, {"version": "0.1.0"}, started=T0 + t, duration_ms=ms, stream_id=100 + i)
              for i, (t, ms) in enumerate(VERSIONS)]  # fmt: skip
    calls.append(make_call("GetContainerEvents", {}, None, started=T0 + 5, duration_ms=3_600_000.0, stream_id=200))
    record(tmp_path / "r.db", calls)
    return tmp_path / "r.db"


def test_counts_per_bucket_and_percentiles_as_the_method_stats_view(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        axis = axis_for(T0, T0 + 204)
        series, _ = read_series(recording.conn, Selection(), axis)
        by_method = {s.method: s for s in series}
        assert [s.method for s in series][:2] == ["ListPodSandbox", "Version"]  # most calls first
        version = by_method["Version"]
        assert version.calls == sum(version.counts) == 4
        assert version.counts[axis.index(T0 + 150)] == 1
        p50, p99, top = recording.conn.execute(
            "SELECT p50_ms, p99_ms, max_ms FROM method_stats WHERE method = 'Version'").fetchone()
        assert (version.total_p50, version.total_p99, version.max_ms) == (p50, p99, top)
        assert version.p99[axis.index(T0 + 150)] == 40.0
        assert version.p50[axis.index(T0 + 100)] is None  # no call in that bucket: no latency
        events = by_method["GetContainerEvents"]  # a stream held open by design: counted, no latency
        assert events.calls == 1 and events.max_ms is None
    finally:
        recording.close()


def test_relist_gaps_find_the_stall(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        axis = axis_for(T0, T0 + 204)
        _, relists = read_series(recording.conn, Selection(), axis)
        (relist,) = relists
        assert relist.method == "ListPodSandbox" and relist.calls == len(RELISTS)
        assert relist.max_gap == 200.0 and relist.max_gap_at == T0 + 203
        assert relist.over_limit == 1 and 200.0 > PLEG_LIMIT_S
        assert relist.gap_p50 == 1.0
        assert relist.bucket_max_gap[axis.index(T0 + 203)] == 200.0
        assert relist.slowest_ms == 0.704
    finally:
        recording.close()


def test_the_selection_narrows_every_series(tmp_path: Path) -> None:
    recording = Recording(_recording(tmp_path))
    try:
        axis = axis_for(T0, T0 + 204)
        series, relists = read_series(recording.conn, Selection(since=T0 + 100), axis)
        assert {s.method: s.calls for s in series} == {"ListPodSandbox": 2, "Version": 1}
        assert relists[0].max_gap == 1.0  # the stall began before the window
    finally:
        recording.close()
