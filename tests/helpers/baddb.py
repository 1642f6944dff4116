"""Recording databases that cannot be opened for writing, in the ways seen on nodes."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cri_proxy.store import db

BAD_DATABASES = ["garbage", "text", "zeroed-header", "locked", "newer", "immutable", "directory", "missing-folder"]


@contextlib.contextmanager
def bad_database(folder: pathlib.Path, kind: str) -> Iterator[pathlib.Path]:
    """A recording path that cannot be opened for writing, in one of the ways seen on nodes."""
    path = folder / "calls.db"
    holder = None
    if kind == "garbage":
        path.write_bytes(os.urandom(64 << 10))
    elif kind == "text":
        path.write_text("not a database\n" * 1000)
    elif kind in ("zeroed-header", "locked", "newer", "immutable"):
        db.open_database(path).close()
        if kind == "zeroed-header":
            with open(path, "r+b") as file:
                file.write(bytes(100))
        elif kind == "newer":
            conn = sqlite3.connect(path)
            conn.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01')")
            conn.commit()
            conn.close()
        elif kind == "locked":
            holder = subprocess.Popen([sys.executable, "-c", (
                "import sqlite3,sys\n"
                f"c=sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                "c.execute('PRAGMA journal_mode=DELETE'); c.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True); sys.stdin.read()\n")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i needs root and a filesystem that supports it (CI runs as root)")
    elif kind == "directory":
        path.mkdir()
    else:
        path = folder / "no-such-folder" / "calls.db"
    try:
        yield path
    finally:
        if holder is not None:
            holder.communicate(b"", timeout=10)
        if kind == "immutable":
            subprocess.run(["chattr", "-i", str(path)], check=True)
