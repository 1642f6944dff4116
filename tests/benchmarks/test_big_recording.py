"""The synthetic busy node (benchmarks/big_recording.py) is written in the recording's own
schema and reads like a real recording: its positional inserts broke once, unnoticed, when
migrations added columns, and the read-side figures in storage/README.md come from it."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sqlite3
import sys
from types import ModuleType

from cri_proxy.store.readonly import Recording
from tests.helpers.cli import run_cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("big_recording", ROOT / "benchmarks" / "big_recording.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("big_recording", module)
    spec.loader.exec_module(module)
    return module


def test_the_busy_node_reads_as_a_recording_with_its_stall_losses_and_probes(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "big.db"
    written, seconds = _generator().build(db, 3000, 5, 1)
    assert written == 3000 and seconds > 600
    stats = run_cli("stats", "--db", str(db), "--format", "json")
    assert stats.returncode == 0, stats.stderr
    assert "1234 calls were seen but NOT recorded" in stats.stderr
    by_method = {row["method"].rsplit("/", 1)[1]: row["calls"] for row in json.loads(stats.stdout)["methods"]}
    rec = Recording(db)
    try:
        lost = rec.conn.execute("SELECT count(*), sum(calls_lost) FROM losses").fetchone()
        outcomes = dict(rec.conn.execute("SELECT outcome, count(*) FROM calls GROUP BY 1").fetchall())
        gaps = rec.conn.execute("SELECT max(b.started_unix - a.started_unix) FROM calls a JOIN calls b ON b.id = "
                                "(SELECT min(id) FROM calls WHERE method = 'ListPodSandbox' AND id > a.id) "
                                "WHERE a.method = 'ListPodSandbox'").fetchone()[0]  # fmt: skip
    finally:
        rec.close()
    assert sum(by_method.values()) == 3000
    assert by_method["ListPodSandbox"] > 500 and by_method["ExecSync"] > 100 and "RunPodSandbox" in by_method
    assert lost == (2, 1234)
    assert outcomes["completed"] > 2900
    assert 239 < gaps < 242  # the 4-minute stall with no relist
    with sqlite3.connect(db) as conn:  # what the rollups hold agrees with the rows
        assert conn.execute("SELECT sum(calls) FROM call_minutes").fetchone()[0] == 3000
