"""cri_proxy/recorder/clients.py: a client is one `clients` row however many calls it makes,
across batches and runs, and an id from a rolled-back transaction is never reused."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from cri_proxy.recorder.clients import ClientIds, identity
from cri_proxy.store import db
from cri_proxy.store.reader import load_calls
from cri_proxy.store.selection import Selection
from tests.helpers.calls import make_call, record, rows

pytestmark = pytest.mark.timeout(30)


def named(name: str | None, pid: int | None = 4242, exe: str | None = "/usr/bin/crictl", **extra: object) -> object:
    return dataclasses.replace(make_call("Version", {}, {}), peer_pid=pid, peer_name=name, peer_exe=exe,
                               peer_gid=0, **extra)  # type: ignore[arg-type]


def test_calls_share_their_client_row_across_batches_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    record(path, [named("crictl"), named("crictl"), named("kubelet", pid=1, exe="/usr/bin/kubelet")])
    record(path, [named("crictl"), named("crictl", exe=None)])  # a second run: finds the row it stored
    assert rows(path, "SELECT pid, uid, gid, name, exe FROM clients ORDER BY id") == [
        (4242, 0, 0, "crictl", "/usr/bin/crictl"), (1, 0, 0, "kubelet", "/usr/bin/kubelet"),
        (4242, 0, 0, "crictl", None)]  # fmt: skip
    assert rows(path, "SELECT client_id FROM calls ORDER BY id") == [(1,), (1,), (2,), (1,), (3,)]
    conn = sqlite3.connect(path)
    try:
        stored = [s.call for s in load_calls(conn, Selection())]
    finally:
        conn.close()
    assert [(c.peer_name, c.peer_exe, c.peer_gid) for c in stored][2:4] == [
        ("kubelet", "/usr/bin/kubelet", 0), ("crictl", "/usr/bin/crictl", 0)]


def test_a_call_nobody_is_known_for_has_no_client(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    nobody = dataclasses.replace(make_call("Version", {}, {}), peer_pid=None, peer_uid=None)
    assert identity(nobody) is None
    record(path, [nobody])
    assert rows(path, "SELECT client_id FROM calls") == [(None,)]
    assert rows(path, "SELECT COUNT(*) FROM clients") == [(0,)]


def test_an_id_from_a_rolled_back_transaction_is_forgotten(tmp_path: Path) -> None:
    conn = db.open_database(tmp_path / "calls.db")
    ids = ClientIds()
    call = named("crictl")
    try:
        conn.execute("BEGIN IMMEDIATE")
        first = ids.id_for(conn, call)  # type: ignore[arg-type]
        conn.execute("ROLLBACK")
        ids.rolled_back()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO clients (name) VALUES ('someone else')")  # takes the id the rollback freed
        again = ids.id_for(conn, call)  # type: ignore[arg-type]
        conn.execute("COMMIT")
        ids.committed()
        assert first == 1 and again == 2
        assert conn.execute("SELECT name FROM clients WHERE id = ?", (again,)).fetchone() == ("crictl",)
    finally:
        conn.close()
