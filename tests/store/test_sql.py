"""The named views return the right rows for a hand-made set of calls."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cri_proxy.model.call import Outcome
from cri_proxy.store import sql
from tests.conftest import ROOT
from tests.helpers.calls import T0, lifecycle_calls, make_call, record, rows

pytestmark = pytest.mark.timeout(30)





@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "calls.db"
    record(path, lifecycle_calls())
    return path


def test_errors(db_path: Path) -> None:
    got = rows(db_path, "SELECT method, status_name, outcome, status_message, pod_name FROM errors "
                        "ORDER BY started_at")  # fmt: skip
    assert got == [
        ("RunPodSandbox", "UNKNOWN", "completed", "failed to set up network", "web"),
        ("GetContainerEvents", None, "cancelled", None, None),
        ("ContainerStatus", "NOT_FOUND", "completed", None, None),
        ("StopContainer", "DEADLINE_EXCEEDED", "completed", None, None),
        ("RemovePodSandbox", "NOT_FOUND", "completed", None, None),
    ]


def test_slow_calls(db_path: Path) -> None:
    got = rows(db_path, "SELECT method, duration_ms FROM slow_calls ORDER BY started_at")
    assert got == [("RunPodSandbox", 30000.0), ("ListContainers", 1500.0), ("PullImage", 2500.0),
                   ("StopContainer", 30000.0)]  # fmt: skip


def test_pod_lifecycle(db_path: Path) -> None:
    got = rows(db_path, "SELECT pod_sandbox_id, pod_name, pod_namespace, created_at, create_ms, "
                        "create_status, stopped_at, stop_status, stop_calls, removed_at, remove_status, "
                        "containers, calls FROM pod_lifecycle")  # fmt: skip
    assert got == [("p1", "web", "shop", "2027-01-15 08:00:40.000", 120.0, "OK", "2027-01-15 08:02:13.000",
                    "OK", 1, "2027-01-15 08:02:14.000", "NOT_FOUND", 1, 4)]  # fmt: skip


def test_container_lifecycle(db_path: Path) -> None:
    got = rows(db_path, "SELECT container_id, container_name, pod_sandbox_id, pod_name, image, created_at, "
                        "create_ms, create_status, started_at, start_ms, start_status, create_to_started_ms, "
                        "stopped_at, stop_status, removed_at, remove_status, calls FROM container_lifecycle")  # fmt: skip
    assert got == [("c1", "app", "p1", "web", "sha256:abc", "2027-01-15 08:00:44.000", 20.0, "OK",
                    "2027-01-15 08:00:44.500", 80.0, "OK", 580.0, "2027-01-15 08:01:40.000", "OK",
                    "2027-01-15 08:02:12.000", "OK", 6)]  # fmt: skip


def test_images_pulled(db_path: Path) -> None:
    got = rows(db_path, "SELECT requested, image, pod_name, pod_namespace, duration_ms, status FROM images_pulled")
    assert got == [("nginx:1", "sha256:abc", "web", "shop", 2500.0, "OK")]


def test_method_stats_percentiles(tmp_path: Path) -> None:
    path = tmp_path / "stats.db"
    calls = [make_call("Version", {}, {}, started=T0 + i, duration_ms=float(d), stream_id=2 * i + 1)
             for i, d in enumerate(reversed(range(1, 101)))]  # fmt: skip
    calls.append(make_call("Version", {}, None, started=T0 + 200, duration_ms=None, status=None,
                           outcome=Outcome.CONNECTION_CLOSED))  # fmt: skip
    calls.append(make_call("Version", {}, None, started=T0 + 201, duration_ms=500.0, status=14))
    calls += [make_call("Status", {}, {}, started=T0 + 300 + i, duration_ms=d) for i, d in enumerate([3.0, 1.0, 2.0])]
    record(path, calls)
    got = rows(path, "SELECT method, calls, errors, error_rate, p50_ms, p95_ms, p99_ms, max_ms, avg_ms "
                     "FROM method_stats ORDER BY method")  # fmt: skip
    # Version: durations 1..100 and 500 (101 timed): nearest rank 51, 96, 100 -> 51, 96, 100
    assert got == [
        ("Status", 3, 0, 0.0, 2.0, 3.0, 3.0, 3.0, 2.0),
        ("Version", 102, 2, round(2 / 102, 4), 51.0, 96.0, 100.0, 500.0, round((5050 + 500) / 101, 3)),
    ]


def test_pod_startup_query(db_path: Path) -> None:
    query = sql.queries()["pod-startup"]
    conn = sqlite3.connect(db_path)
    got = conn.execute(query.sql, {"pod_name": "web", "pod_namespace": "shop"}).fetchall()
    conn.close()
    methods = [r[2] for r in got]
    assert methods == ["RunPodSandbox", "RunPodSandbox", "PullImage", "CreateContainer", "StartContainer", "ContainerStatus",
                       "StopContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"]  # fmt: skip
    gaps = {r[2]: r[4] for r in got[:5]}
    assert gaps["RunPodSandbox"] == 10_000.0  # second attempt: 10 s after the first ended
    assert gaps["CreateContainer"] == 500.0  # after the 2.5 s pull
    assert gaps["StartContainer"] == 480.0


@pytest.mark.timeout(120)
def test_a_built_wheel_carries_the_storage_files_and_finds_them(tmp_path: Path) -> None:
    """`pip wheel .`, unpacked as an installer would, outside the checkout: the package finds
    every migration, the views and the named queries inside itself."""
    import subprocess
    import sys
    import zipfile

    import shutil

    source = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    for name in ("cri_proxy", "storage"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("cri_proxy-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    wanted = sorted(str(p.relative_to(ROOT / "storage")) for p in (ROOT / "storage").rglob("*") if p.is_file())
    inside = site / "cri_proxy" / "store" / "storage"
    assert sorted(str(p.relative_to(inside)) for p in inside.rglob("*") if p.is_file()) == wanted
    probe = ("from cri_proxy.store import sql; print(sql.storage_dir()); "
             "print(len(sql.migrations()), len(sql.view_names()), len(sql.queries()))")  # fmt: skip
    ran = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    where, counts = ran.stdout.splitlines()
    assert Path(where) == inside
    assert counts == f"{len(sql.migrations())} {len(sql.view_names())} {len(sql.queries())}"
