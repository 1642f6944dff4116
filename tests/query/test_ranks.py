"""Whole-recording method numbers from the rollups: the same as counting and ranking every
call (stats' --since path, the nearest-rank rule), ties, untimed calls and a method name two
services share included."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest

from cri_proxy.model.call import Outcome
from cri_proxy.query.ranks import nearest_rank, whole_recording_methods
from cri_proxy.query.stats import compute
from cri_proxy.query.tail import short_method
from cri_proxy.store import db
from cri_proxy.store.readonly import Recording
from tests.helpers.calls import make_call, record
from tests.helpers.recordings import GOLDEN_DIR

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("p", "n", "rank"), [(50, 1, 1), (50, 2, 1), (50, 3, 2), (95, 100, 95), (99, 101, 100),
                                              (99, 1000, 990), (95, 7, 7)])  # fmt: skip
def test_nearest_rank(p: int, n: int, rank: int) -> None:
    assert nearest_rank(p, n) == rank
    assert rank * 100 >= p * n and (rank - 1) * 100 < p * n


def test_the_rollups_answer_as_every_call_does(tmp_path: Path) -> None:
    rng = random.Random(7)
    start = time.time() - 3000
    calls = []
    for i in range(600):
        method = rng.choice(["ListContainers", "ContainerStatus", "Version", "ExecSync"])
        version = "v1alpha2" if method == "Version" and i % 3 == 0 else "v1"  # Version: two services
        duration = None if i % 41 == 0 else float(rng.choice([1, 2, 2, 3, 5, 8, 13])) + rng.choice([0, 0.5, 0.25])
        calls.append(make_call(method, {}, None if duration is None else {}, started=start + i * 4,
                               duration_ms=duration, status=None if duration is None else (14 if i % 17 == 0 else 0),
                               outcome=Outcome.CONNECTION_CLOSED if duration is None else Outcome.COMPLETED,
                               version=version, stream_id=2 * i + 1))  # fmt: skip
    path = tmp_path / "calls.db"
    record(path, calls)
    recording = Recording(path)
    try:
        fast = whole_recording_methods(recording.conn)
        # --since before the first call reads every call: the old way, the exact reference
        every = compute(recording.conn, since_at="2000-01-01 00:00:00.000").methods
        view = recording.conn.execute("SELECT service, method, calls, errors, error_rate, p50_ms, p95_ms, p99_ms, "
                                      "max_ms FROM method_stats").fetchall()  # fmt: skip
    finally:
        recording.close()
    assert compute_like(fast) == every
    services = {(s, m) for s, m, *_ in fast}
    assert ("runtime.v1alpha2.RuntimeService", "Version") in services and ("runtime.v1.RuntimeService", "Version") in services
    by_key = {(s, m): row for s, m, *row in fast}
    for service, method, n, errors, rate, p50, p95, p99, max_ms in view:
        row = by_key[(service, method)]
        assert (n, errors, rate, p50, p95, p99, max_ms) == (row[0], row[1], row[2], row[4], row[5], row[6], row[7])


def compute_like(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """whole_recording_methods' rows as stats prints them (service and method shortened)."""
    return [(short_method(str(s), str(m)), *rest) for s, m, *rest in rows]


def test_an_older_file_answers_the_same(tmp_path: Path) -> None:
    """A file whose rollups are computed on the fly (compat) and the same file migrated."""
    copy = tmp_path / "v4.db"
    shutil.copy(GOLDEN_DIR / "schema-v4.db", copy)
    old = Recording(copy)
    try:
        before = compute(old.conn)
    finally:
        old.close()
    db.open_database(copy).close()  # migrated to this version
    new = Recording(copy)
    try:
        assert new.schema_version > 4 and compute(new.conn) == before
    finally:
        new.close()
