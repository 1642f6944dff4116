"""The recording format as datasette shows it: `datasette calls.db` is the obvious way to
browse a recording, so every table and view of one (storage/migrations, storage/views.sql)
must answer, as JSON and as its HTML page (which renders BLOB cells as download links), and
with the metadata made from storage/README.md (store/datasette.py) each shows its
description and every column's."""

from __future__ import annotations

import contextlib
import html
import http.client
import json
import pathlib
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from cri_proxy.store.datasette import metadata, read_sections
from cri_proxy.store.sql import storage_dir
from tests.helpers.calls import lifecycle_calls, record
from tests.helpers.cli import run_cli
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


@contextlib.contextmanager
def serve(db: pathlib.Path, sock: pathlib.Path, *args: str) -> Iterator[None]:
    """`datasette serve DB --uds SOCK ARGS` while the block runs."""
    proc = subprocess.Popen([sys.executable, "-m", "datasette", "serve", str(db), "--uds", str(sock), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_listening(proc, sock)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[pathlib.Path, pathlib.Path]]:
    """datasette serving a copy of the newest golden recording (`cri-proxy demo --db`):
    (the database copy, the socket). One server for the module: its tests only GET pages."""
    folder = pathlib.Path(tempfile.mkdtemp(prefix="crip-", dir="/tmp"))  # short: a unix socket path
    try:
        db = folder / "calls.db"
        shutil.copy(GOLDEN[-1], db)
        sock = folder / "ds.sock"
        with serve(db, sock):
            yield db, sock
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def names_and_columns(db: pathlib.Path) -> dict[str, list[str]]:
    """Every table and view of a recording, with its columns."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")]
        return {name: [row[1] for row in conn.execute(f"PRAGMA table_info({name})")] for name in names}
    finally:
        conn.close()


def test_every_table_and_view_answers(served: tuple[pathlib.Path, pathlib.Path]) -> None:
    db, sock = served
    names = list(names_and_columns(db))
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


def test_every_table_view_and_column_of_a_new_recording_is_described_in_the_readme(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "calls.db"
    record(db, lifecycle_calls())
    tables = metadata()["databases"]["calls"]["tables"]
    undescribed = {name: [c for c in cols if c not in tables.get(name, {}).get("columns", {})]
                   for name, cols in names_and_columns(db).items()}  # fmt: skip
    assert {name: cols for name, cols in undescribed.items() if cols} == {}
    assert all(entry.get("description_html") for name, entry in tables.items() if name != "schema_migrations")


def test_readme_cells_naming_several_columns_and_inline_columns_are_read() -> None:
    sections = read_sections((storage_dir() / "README.md").read_text())
    assert sections["calls"].columns["started_unix"] == sections["calls"].columns["started_at"]
    assert sections["pod_lifecycle"].columns["pod_namespace"] == sections["pod_lifecycle"].columns["pod_sandbox_id"]
    assert "calls" not in sections["errors"].inline and sections["errors"].inline[0] == "call_id"
    tables = metadata("node-a")["databases"]["node-a"]["tables"]
    assert tables["errors"]["columns"]["status_message"] == tables["calls"]["columns"]["status_message"]
    assert "<code>GetContainerEvents</code>" in tables["slow_calls"]["description_html"]


def test_datasette_serves_every_table_and_view_with_the_readmes_descriptions(sock_dir: pathlib.Path) -> None:
    db, sock, meta = sock_dir / "calls.db", sock_dir / "ds.sock", sock_dir / "metadata.json"
    record(db, lifecycle_calls())
    made = run_cli("datasette-metadata")
    assert made.returncode == 0, made.stderr
    meta.write_text(made.stdout)
    tables = json.loads(made.stdout)["databases"]["calls"]["tables"]
    missing: dict[str, list[str]] = {}
    with serve(db, sock, "-m", str(meta)):
        for name, columns in names_and_columns(db).items():
            status, body = get(sock, f"/calls/{name}")
            assert status == 200, (name, body[:200])
            page = body.decode()
            # the page lists each column's description (<dl class="column-descriptions">)
            lacking = [c for c in columns if not re.search(f"<dt>{re.escape(c)}</dt>\\s*<dd>[^<]+</dd>", page)]
            if tables[name].get("description_html") and 'class="metadata-description"' not in page:
                lacking.append("(description)")
            if lacking:
                missing[name] = lacking
        # the named queries are canned queries: each runs, with its parameters, and says what it answers
        values = {"minutes": "60", "limit": "5", "pod_name": "web", "pod_namespace": "shop"}
        for name, query in json.loads(made.stdout)["databases"]["calls"]["queries"].items():
            args = "&".join(f"{p}={values[p]}" for p in query["params"])
            status, body = get(sock, f"/calls/{name}.json?{args}")
            assert status == 200 and json.loads(body)["ok"], (name, body[:300])
            status, body = get(sock, f"/calls/{name}?{args}")
            if status != 200 or html.escape(query["description"].split(":")[0], quote=False) not in body.decode():
                missing[name] = ["(canned query)"]
    assert missing == {}
