"""The recording's file under duress: a small or full disk (the WAL stays bounded, a full
disk is one loss episode that ends when space returns) and damaged pages found at open.

The disk tests mount a small tmpfs, so they need root (CI runs them as root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cri_proxy.model.errors import StorageError
from cri_proxy.model.options import RecorderOptions
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.writer import WAL_LIMIT_BYTES
from tests.helpers.calls import integrity, make_unique, record, rows, version_call, wait_for

pytestmark = pytest.mark.timeout(60)
FAST = RecorderOptions(retry_interval_s=0.05, busy_timeout_s=0.05, max_attempts=2, flush_interval_s=0.02)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A function that mounts a tmpfs of the given size ("2m") and returns its folder."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


class Feeder:
    """Submits distinct calls (no dedup) and watches the WAL's size as it goes."""

    def __init__(self, recorder: Recorder, path: Path) -> None:
        self.recorder = recorder
        self.wal = Path(f"{path}-wal")
        self.sent = 0
        self.largest_wal = 0

    def until(self, done: Callable[[], bool], limit: int = 200_000) -> None:
        while not done():
            assert self.sent < limit, f"not reached after {self.sent} calls: {self.recorder.stats}"
            for _ in range(20):
                self.sent += 1
                self.recorder.submit(version_call(self.sent))
            try:
                self.largest_wal = max(self.largest_wal, self.wal.stat().st_size)
            except FileNotFoundError:
                pass
            wait_for(lambda: self.recorder.stats.queued < 200)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:  # ENOSPC: the disk is full
            pass
    return filler


def test_the_wal_never_fills_a_small_disk_by_itself(small_disk: Callable[[str], Path]) -> None:
    path = small_disk("2m") / "calls.db"
    recorder = Recorder(path, options=FAST, redact=make_unique)
    recorder.start()
    feeder = Feeder(recorder, path)
    feeder.until(lambda: recorder.stats.lost > 0)  # the disk is full: of recorded calls now
    stats = recorder.stats
    recorder.close()
    assert stats.recorded > 0
    assert path.stat().st_size > feeder.largest_wal  # the calls went into the database file, not the WAL
    assert feeder.largest_wal < 1 << 20


def test_a_full_disk_is_one_loss_episode_that_ends_when_space_returns(small_disk: Callable[[str], Path]) -> None:
    folder = small_disk("8m")
    path = folder / "calls.db"
    recorder = Recorder(path, options=FAST, redact=make_unique)
    recorder.start()
    feeder = Feeder(recorder, path)
    feeder.until(lambda: recorder.stats.recorded >= 500)
    filler = fill(folder)
    feeder.until(lambda: recorder.stats.lost >= 200)
    assert not recorder.stats.healthy
    lost_while_full = recorder.stats.lost
    filler.unlink()
    feeder.until(lambda: recorder.stats.healthy and recorder.stats.recorded >= 2000)
    recorder.close()
    stats = recorder.stats
    assert stats.recorded + stats.lost == feeder.sent and stats.loss_episodes == 1
    assert rows(path, "SELECT calls_recorded, calls_lost, loss_episodes FROM sessions") == [
        (stats.recorded, stats.lost, 1)]
    [(reason, lost)] = rows(path, "SELECT reason, calls_lost FROM losses")
    assert "disk is full" in reason and lost >= lost_while_full
    assert feeder.largest_wal <= WAL_LIMIT_BYTES
    assert integrity(path) == ["ok"]


def _damage_a_page(path: Path) -> None:
    """Garbage over one of the calls table's pages; the header and schema (page 1) intact."""
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    pages = path.stat().st_size // page_size
    [(root,)] = rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'call_rows'")  # calls: a view
    victim = root if root > 1 else pages // 2
    with open(path, "r+b") as f:
        f.seek((victim - 1) * page_size)
        f.write(os.urandom(page_size))


def test_damaged_pages_are_found_at_open_and_the_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [version_call(i) for i in range(300)])
    _damage_a_page(path)
    with pytest.raises(StorageError, match="failed its integrity check"):
        Recorder(path, options=FAST).start(strict=True)
    recorder = Recorder(path, options=FAST)
    recorder.start(strict=False)
    assert not recorder.stats.healthy
    recorder.submit(version_call(1000))
    wait_for(lambda: recorder.stats.recorded == 1)
    recorder.close()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1
    assert rows(path, "SELECT count(*) FROM calls") == [(1,)]
    assert integrity(path) == ["ok"]
