"""The recording format as datasette shows it: `datasette calls.db` is the obvious way to
browse a recording, so every table and view of one (storage/migrations, storage/views.sql)
must answer, as JSON and as its HTML page (which renders BLOB cells as download links)."""

from __future__ import annotations

import http.client
import pathlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.helpers.recordings import GOLDEN

pytestmark = pytest.mark.timeout(90)
pytest.importorskip("datasette", reason="datasette is in the dev extra: pip install -e '.[dev]'")


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the unix socket `datasette serve --uds` listens on (no port to pick)."""

    def __init__(self, path: pathlib.Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(self.path))
        self.sock = sock


def get(sock: pathlib.Path, url: str) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until_listening(proc: subprocess.Popen[bytes], sock: pathlib.Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"datasette exited with {proc.returncode}")
        try:
            if get(sock, "/-/versions.json")[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.05)
    raise AssertionError("datasette did not start listening")


@pytest.fixture
def served(sock_dir: pathlib.Path) -> Iterator[tuple[pathlib.Path, pathlib.Path]]:
    """datasette serving a copy of the newest golden recording (`cri-proxy demo --db`):
    (the database copy, the socket)."""
    db = sock_dir / "calls.db"
    shutil.copy(GOLDEN[-1], db)
    sock = sock_dir / "ds.sock"
    proc = subprocess.Popen([sys.executable, "-m", "datasette", "serve", str(db), "--uds", str(sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_listening(proc, sock)
        yield db, sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_every_table_and_view_answers(served: tuple[pathlib.Path, pathlib.Path]) -> None:
    db, sock = served
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")]
    finally:
        conn.close()
    assert {"calls", "payloads", "call_messages", "failed_probes", "problems"} <= set(names)
    failed = {}
    for name in names:
        for url in (f"/calls/{name}.json", f"/calls/{name}"):
            status, body = get(sock, url)
            if status != 200:
                failed[url] = (status, body[:200])
    assert failed == {}


def test_a_messages_bytes_download_from_the_call_messages_page(served: tuple[pathlib.Path, pathlib.Path]) -> None:
    db, sock = served
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        payload_id, data = conn.execute("SELECT rowid, data FROM call_messages WHERE length(data) > 0 "
                                        "ORDER BY call_id LIMIT 1").fetchone()
    finally:
        conn.close()
    assert get(sock, f"/calls/call_messages/{payload_id}.blob?_blob_column=data") == (200, data)
