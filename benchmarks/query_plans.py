"""EXPLAIN QUERY PLAN of what the read side asks of a recording: every view, every named
query, a few users' filters, and every statement the CLI's read commands run (traced as
they run, in this process), with the tables each plan scans rather than searches.

    .venv/bin/python benchmarks/query_plans.py /tmp/hour.db
    env PYTHONPATH=../main ../main/.venv/bin/python benchmarks/query_plans.py /tmp/hour-base.db

Run it with two checkouts' code on their own files (the same recording at two schema
versions) and compare: a plan that scans where the other searched is a query that got
slower on a big file. `--json` writes {statement: [plan lines]} for a diff.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cri_proxy.store import sql  # noqa: E402

USERS = [
    "SELECT * FROM calls WHERE container_id IN ('a', 'b')",
    "SELECT * FROM calls WHERE pod_name = 'web-0'",
    "SELECT * FROM calls WHERE pod_namespace = 'shop' AND pod_name = 'web-0'",
    "SELECT * FROM calls WHERE pod_sandbox_id = 'a'",
    "SELECT * FROM calls WHERE method = 'ExecSync' ORDER BY started_unix",
    "SELECT * FROM messages WHERE payload_id = 3",
    "SELECT * FROM calls AS c JOIN messages AS m ON m.call_id = c.id WHERE c.id = 7",
    "SELECT * FROM calls WHERE id = 7",
    "SELECT * FROM calls WHERE started_unix > 0 ORDER BY started_unix LIMIT 10",
    "SELECT * FROM calls WHERE started_at > '2026-12-02 03:00:00'",
    "SELECT * FROM calls ORDER BY id DESC LIMIT 10",
]
# The CLI's read commands, as a user runs them (the recording's path appended as --db).
COMMANDS = [
    ["stats"], ["stats", "--session", "1"], ["stats", "--since", "1h"], ["health", "--since", "1h"],
    ["pod", "shop/web-0"], ["query", "SELECT * FROM method_stats"], ["report", "-o", "{tmp}/report.html"],
]
_TIME = re.compile(r"'\d{4}-\d\d-\d\d[ T][\d:.]*'")


def statements(db: str, tmp: str) -> list[str]:
    found = [f"SELECT * FROM {name}" for name in sql.view_names()]
    found += [q.sql for q in sql.queries().values()]
    found += USERS
    traced: list[str] = []
    connect = sqlite3.connect

    def tracing(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)  # type: ignore[arg-type]
        conn.set_trace_callback(traced.append)
        return conn

    sqlite3.connect = tracing  # type: ignore[assignment]
    from cri_proxy.cli.app import app
    for command in COMMANDS:
        argv = [part.format(tmp=tmp) for part in command] + ["--db", db]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                app(argv, standalone_mode=False)
            except (SystemExit, Exception) as exc:  # a command that exits non-zero still ran its SQL
                print(f"{' '.join(command)}: {exc!r}", file=sys.__stderr__)
    sqlite3.connect = connect  # type: ignore[assignment]
    # The CLI's times (--since) as one literal, so that two runs' statements compare equal.
    found += [_TIME.sub("'2026-12-02 03:00:00'", s) for s in traced if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    return list(dict.fromkeys(found))


def plans(db: str, texts: list[str]) -> dict[str, list[str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    from cri_proxy.store import compat, db as store_db
    compat.adapt(conn, store_db.schema_version(conn))
    got = {}
    for text in texts:
        params = {name: 1 for name in re.findall(r"(?<![:\w]):([a-z_]+)", text)}
        try:
            rows = conn.execute(f"EXPLAIN QUERY PLAN {text}", params).fetchall()
        except sqlite3.Error as exc:
            got[text] = [f"error: {exc}"]
            continue
        got[text] = [str(row[3]) for row in rows]
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--against", type=Path, help="another run's --json: print only the statements whose scans differ")
    args = parser.parse_args()
    got = plans(args.db, statements(args.db, args.tmp))
    other = json.loads(args.against.read_text()) if args.against else None
    for text, lines in got.items():
        if other is not None and _scans(other.get(text, [])) == _scans(lines):
            continue
        scans = _scans(lines)
        line = f"{'SCAN ' + ', '.join(scans) if scans else 'search'}\t{' '.join(text.split())[:160]}"
        if other is not None:
            line += f"\n    other: {', '.join(_scans(other[text])) or 'search' if text in other else '(not run)'}"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(got, indent=1))


def _scans(lines: list[str]) -> list[str]:
    """What a plan reads whole: its SCANs (through an index or not) and MATERIALIZEd views
    (subqueries' numbers left out: they differ between schemas)."""
    return sorted(re.sub(r"subquery-\d+", "subquery", line) for line in lines
                  if line.startswith("SCAN") or line in ("MATERIALIZE calls", "MATERIALIZE messages"))


if __name__ == "__main__":
    main()
