"""cri_proxy/query/clients.py (`stats --clients`), and the way there: a real client process of
a known name calls through a real recording proxy (which reads who it is at accept); the
recording, `tail`, `stats --clients` and the metrics' client label all name it."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys

import pytest

from tests.helpers.calls import read_rows, rows, wait_for
from tests.helpers.cli import Tail, run_cli
from tests.helpers.fakeruntime import runtime  # noqa: F401  (a fixture, found by name)
from tests.helpers.namedclient import run_named_client
from tests.helpers.proxyproc import ProxyProcess
from tests.helpers.recordings import GOLDEN_DIR
from tests.helpers.scrape import get, samples, total

pytestmark = pytest.mark.timeout(60)


async def test_a_named_client_is_recorded_shown_and_counted(sock_dir: pathlib.Path, runtime: pathlib.Path) -> None:
    db, metrics = sock_dir / "calls.db", f"unix://{sock_dir}/m.sock"
    endpoint = f"unix://{sock_dir}/p.sock"
    async with ProxyProcess(sock_dir / "p.sock", runtime, "--db", str(db), "--metrics-listen", metrics) as proxy:
        pids = [await asyncio.to_thread(run_named_client, name, endpoint) for name in ("fake-crictl", "agent-x")]
        pids.append(await asyncio.to_thread(run_named_client, "fake-crictl", endpoint))  # another run of it
        found: dict[str, float] = {}

        def counted() -> bool:
            found.update({c: total(samples(get(metrics, "/metrics")[1]), "cri_proxy_client_calls_total", client=c)
                          for c in ("fake-crictl", "agent-x")})
            return found == {"fake-crictl": 6, "agent-x": 3}

        await asyncio.to_thread(wait_for, counted)
        assert await proxy.astop() == 0

    got = rows(db, "SELECT c.peer_pid, cl.pid, cl.uid, cl.gid, cl.name, cl.exe, c.method FROM calls c "
                   "JOIN clients cl ON cl.id = c.client_id ORDER BY c.id")
    assert [(r[0], r[4], r[6]) for r in got] == [
        (pid, name, method) for pid, name in zip(pids, ("fake-crictl", "agent-x", "fake-crictl"))
        for method in ("Version", "RunPodSandbox", "RemovePodSandbox")]  # fmt: skip
    assert all(r[0] == r[1] and (r[2], r[3]) == (os.getuid(), os.getgid()) for r in got)
    assert {r[5] for r in got} == {os.path.realpath(sys.executable)}  # the interpreter it runs
    assert rows(db, "SELECT COUNT(*) FROM clients") == [(3,)]  # one row per process, not per call

    tail = Tail("--db", str(db), "-n", "9")
    try:
        lines = tail.take(9)
    finally:
        assert tail.stop() == 0
    assert [line.split(" by=")[1].split()[0] for line in lines] == [
        f"{name}:{pid}" for pid, name in zip(pids, ("fake-crictl", "agent-x", "fake-crictl")) for _ in range(3)]
    listed = run_cli("stats", "--db", str(db), "--clients", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    by_client = {r["client"]: r for r in json.loads(listed.stdout)["clients"]}
    assert {c: (r["processes"], r["calls"], r["changes"], r["errors"]) for c, r in by_client.items()} == {
        "fake-crictl": (2, 6, 4, 0), "agent-x": (1, 3, 2, 0)}
    assert by_client["agent-x"]["uid"] == os.getuid()


def test_older_recordings_group_by_pid() -> None:
    golden = GOLDEN_DIR / "schema-v5.db"  # before 0006: pids only
    result = run_cli("stats", "--db", str(golden), "--clients", "--format", "json")
    assert result.returncode == 0, result.stderr
    clients = json.loads(result.stdout)["clients"]
    assert clients and all(r["client"].startswith("pid:") and r["exe"] is None for r in clients)
    assert sum(r["calls"] for r in clients) == read_rows(golden, "SELECT COUNT(*) FROM calls")[0][0]
