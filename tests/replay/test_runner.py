"""`cri-proxy replay` against fresh stand-in runtimes: matches, skips, differences, pacing, linking."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
import time

import pytest

from cri_proxy.fakeruntime import PreloadedImage, start_fake_runtime
from cri_proxy.replay.pace import parse_pace
from cri_proxy.replay.progress import Progress
from cri_proxy.replay.results import Verdict
from cri_proxy.replay.runner import ReplayOptions, run_replay, skip_line
from cri_proxy.store.selection import Selection
from tests.helpers.recordings import (
    MUTATIONS,
    drive_verbose,
    record_through_proxy,
    PHASE_GAP_S,
    Recorded,
    run_cli,
)

pytestmark = pytest.mark.timeout(60)


async def test_full_replay_against_a_fresh_runtime_matches(sock_dir: pathlib.Path, recording: Recorded) -> None:
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    lines: list[str] = []
    try:
        result = await run_replay(ReplayOptions(str(recording.db), target.address, allow_mutations=True,
                                                db_out=str(recording.db)), lines.append)  # side by side, as asked
    finally:
        await target.stop(0)
    bad = [(r.call_id, r.method, r.reason, r.differences) for r in result.results if r.verdict is not Verdict.MATCHED]
    assert bad == []
    assert len(result.results) == recording.calls and result.exit_code == 0 and lines == []
    redacted = {r.method for r in result.results if r.redacted}
    assert redacted == {"PullImage", "CreateContainer"}
    assert all("redacted" in r.reason for r in result.results if r.redacted)
    assert not target.state.pods  # created and removed again on the target: the remapped ids reached it
    conn = sqlite3.connect(recording.db)
    sessions = conn.execute("SELECT id, json_extract(config, '$.replay_of.session'), "
                            "json_extract(config, '$.replay_of.db'), ended_at IS NOT NULL FROM sessions").fetchall()
    assert sessions[0][1] is None and sessions[1] == (result.replay_session, None, str(recording.db), 1)
    linked = conn.execute(
        "SELECT s.method, s.status_code, r.status_code FROM calls r, json_each(r.notes) n "
        "JOIN calls s ON n.value = 'replay of call ' || s.id WHERE r.session_id = ? ORDER BY r.id",
        (result.replay_session,)).fetchall()
    conn.close()
    assert len(linked) == recording.calls
    assert all(old == new for method, old, new in linked if method != "GetContainerEvents")
    events = [(old, new) for method, old, new in linked if method == "GetContainerEvents"]
    assert len(events) == 1 and events[0][0] in (None, 4) and events[0][1] is None  # the replay cut the stream itself: no status arrived
    assert ("ContainerStatus", 5, 5) in linked  # the recorded error replayed as the same error


async def test_without_allow_mutations_the_changes_are_skipped(sock_dir: pathlib.Path, recording: Recorded) -> None:
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        code, out, err = await run_cli("replay", str(recording.db), "--target", target.address,
                                       "--where", "method NOT IN ('ContainerStatus', 'PodSandboxStatus', "
                                       "'ListPodSandbox', 'ImageStatus')")
    finally:
        await target.stop(0)
    assert out.splitlines()[0] == skip_line(MUTATIONS)
    assert "changes the node" not in err
    assert not target.state.pods  # nothing was created on the target
    # ListImages differs: the pull was skipped, but the recording saw redis after it
    assert code == 1, out + err
    assert "ListImages: differed" in out and "skipped" in out


async def test_a_target_with_other_images_differs_and_writes_reports(sock_dir: pathlib.Path,
                                                                      recording: Recorded) -> None:
    images = (PreloadedImage("registry.k8s.io/pause:3.9", "sha256:" + "f" * 64, 321_520, pinned=True),
              PreloadedImage("docker.io/library/busybox:latest", "sha256:" + "2" * 64, 4_000_000))
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock", preload_images=images)
    try:
        code, out, err = await run_cli("replay", str(recording.db), "--target", target.address, "--where",
                                       "method IN ('ListImages', 'ImageStatus', 'Version')",
                                       "--report", str(sock_dir / "r.html"))
        code2, _out2, _ = await run_cli("replay", str(recording.db), "--target", target.address, "--where",
                                        "method IN ('ListImages', 'ImageStatus', 'Version')",
                                        "--report", str(sock_dir / "r.json"), "--ignore", "images*.id",
                                        "--ignore", "image.id", "--ignore", "*size", "--ignore", "*repo_digests*",
                                        "--ignore", "*spec.image")
    finally:
        await target.stop(0)
    assert code == 1, out + err
    assert "ImageStatus: differed" in out and "image.id" in out
    page = (sock_dir / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "sha256:" + "2" * 64 in page and "differed" in page
    report = json.loads((sock_dir / "r.json").read_text())
    assert report["summary"]["matched"] == 4 and report["summary"]["ok"] is False  # ListImages: redis missing
    assert {m["method"] for m in report["methods"]} == {"ListImages", "ImageStatus", "Version"}
    assert code2 == 1
    differed = [c for c in report["calls"] if c["result"] == "differed"]
    assert {c["method"] for c in differed} == {"ListImages"}  # the second ListImages saw redis


async def test_pacing_original_honours_the_gaps_and_fast_does_not(sock_dir: pathlib.Path,
                                                                 recording: Recorded) -> None:
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        timings = {}
        for pace in ("fast", "original", "x4"):
            opts = ReplayOptions(str(recording.db), target.address, speed=parse_pace(pace),
                                 selection=Selection(where="method IN ('Version', 'ListContainers')"))
            started = time.monotonic()
            result = await run_replay(opts)
            timings[pace] = time.monotonic() - started
            assert [r.method for r in result.results] == ["Version", "ListContainers", "ListContainers",
                                                          "ListContainers", "Version"]
    finally:
        await target.stop(0)
    assert timings["fast"] < PHASE_GAP_S
    assert recording.seconds * 0.9 < timings["original"] < recording.seconds + 2.0
    assert timings["x4"] < timings["original"] * 0.6


async def test_the_replay_can_go_to_another_database(sock_dir: pathlib.Path, recording: Recorded) -> None:
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    out_db = sock_dir / "out.db"
    try:
        result = await run_replay(ReplayOptions(str(recording.db), target.address, db_out=str(out_db),
                                                selection=Selection(session=1, where="method = 'Version'")))
    finally:
        await target.stop(0)
    assert result.exit_code == 0
    conn = sqlite3.connect(out_db)
    (config,) = conn.execute("SELECT config FROM sessions").fetchone()
    assert json.loads(config)["replay_of"]["session"] == 1
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 2
    conn.close()
    assert sqlite3.connect(recording.db).execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


async def test_a_replay_leaves_its_source_byte_identical(sock_dir: pathlib.Path, recording: Recorded) -> None:
    """Stopped (no -wal) and live (a writer holds committed rows in the -wal): the replay
    reads, records nothing, and neither the file nor its -wal changes."""
    from tests.helpers.recordings import file_sha256

    wal = pathlib.Path(f"{recording.db}-wal")
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        before = file_sha256(recording.db)
        result = await run_replay(ReplayOptions(str(recording.db), target.address))
        assert result.db_out is None and result.replay_session is None and result.results
        assert file_sha256(recording.db) == before and not wal.exists()
        writer = sqlite3.connect(recording.db, isolation_level=None)  # the proxy, still recording
        try:
            writer.execute("UPDATE sessions SET calls_recorded = calls_recorded + 1")
            live = (file_sha256(recording.db), file_sha256(wal))
            sessions = writer.execute("SELECT count(*) FROM sessions").fetchone()
            result = await run_replay(ReplayOptions(str(recording.db), target.address))
            assert result.results and (file_sha256(recording.db), file_sha256(wal)) == live
            assert writer.execute("SELECT count(*) FROM sessions").fetchone() == sessions
        finally:
            writer.close()
    finally:
        await target.stop(0)


async def test_pids_and_ids_inside_verbose_info_do_not_count_as_differences(sock_dir: pathlib.Path) -> None:
    folder = sock_dir / "rec"
    folder.mkdir()
    db = await record_through_proxy(folder, drive_verbose)
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        result = await run_replay(ReplayOptions(str(db), target.address, allow_mutations=True))
    finally:
        await target.stop(0)
    verbose = [r for r in result.results if r.method in ("ContainerStatus", "PodSandboxStatus")]
    assert len(verbose) == 2 and all(r.verdict is Verdict.MATCHED for r in verbose), verbose
    assert result.exit_code == 0


async def test_a_call_of_a_newer_call_format_is_skipped_with_its_reason(sock_dir: pathlib.Path,
                                                                        recording: Recorded) -> None:
    conn = sqlite3.connect(recording.db)
    with conn:
        conn.execute("UPDATE calls SET format_version = 99 WHERE method = 'Version'")
    conn.close()
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    try:
        result = await run_replay(ReplayOptions(str(recording.db), target.address,
                                                selection=Selection(where="method IN ('Version', 'Status')")))
    finally:
        await target.stop(0)
    verdicts = {(r.method, r.verdict, r.reason) for r in result.results}
    assert verdicts == {("Version", Verdict.SKIPPED, "recorded in call format 99 (this cri-proxy knows 1)"),
                        ("Status", Verdict.MATCHED, "")}


class StopAfter(Progress):
    """A progress sink that asks the replay to stop once `calls` calls are done (as Ctrl-C does)."""

    def __init__(self, calls: int, stop: asyncio.Event) -> None:
        super().__init__()
        self.calls, self.stop = calls, stop

    def advance(self, verdict: Verdict) -> None:
        super().advance(verdict)
        if self.done == self.calls:
            self.stop.set()


async def test_a_stopped_replay_keeps_the_calls_done_and_closes_its_session(sock_dir: pathlib.Path,
                                                                            recording: Recorded) -> None:  # fmt: skip
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    stop = asyncio.Event()
    progress = StopAfter(5, stop)
    out_db = sock_dir / "out.db"
    try:
        result = await run_replay(ReplayOptions(str(recording.db), target.address, allow_mutations=True,
                                                db_out=str(out_db)), lambda line: None, progress, stop)  # fmt: skip
    finally:
        await target.stop(0)
    assert len(result.results) == 5 and (progress.done, progress.total) == (5, recording.calls)
    conn = sqlite3.connect(f"file:{out_db}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT ended_at IS NOT NULL, calls_recorded FROM sessions").fetchall() == [(1, 5)]
    finally:
        conn.close()


async def test_stopping_cancels_the_call_in_flight(sock_dir: pathlib.Path, recording: Recorded) -> None:
    """A GetContainerEvents stream read for up to two minutes: stop while it is open ends the
    replay at once (the test's timeout is one minute), and the cut call is not counted."""
    target = await start_fake_runtime(f"unix://{sock_dir}/t.sock")
    stop = asyncio.Event()

    async def stop_once_the_stream_is_open() -> None:
        while target.state.event_listeners == 0:
            await asyncio.sleep(0.01)
        stop.set()

    opts = ReplayOptions(str(recording.db), target.address, selection=Selection(where="method = 'GetContainerEvents'"),
                         max_stream_s=120.0)  # fmt: skip
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(stop_once_the_stream_is_open())
            result = await run_replay(opts, lambda line: None, Progress(), stop)
    finally:
        await target.stop(0)
    assert result.results == [] and stop.is_set()
