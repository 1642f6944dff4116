"""Times the read commands on a recording (made by big_recording.py): `stats`, `health` and the
`method_stats` view, each run as a user runs it (a process of its own), best of N.

    .venv/bin/python benchmarks/read_times.py /tmp/big.db
    .venv/bin/python benchmarks/read_times.py /tmp/big-v5.db --checkout ../main --skip health

`--checkout DIR` runs another checkout's code (PYTHONPATH=DIR, this interpreter), e.g. the
code before a change, on a copy of the file at the schema that code knows. The times
include Python's start (`cri-proxy version`, timed too, says how much of it that is).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

COMMANDS = {
    "version": ["version"],
    "stats": ["stats", "--db", "{db}"],
    "health": ["health", "--db", "{db}", "--since", "1h"],
    "method_stats": ["query", "--db", "{db}", "SELECT * FROM method_stats"],
    "pod": ["pod", "--db", "{db}", "shop/web-0"],
    "pod-startup": ["query", "--db", "{db}", "--named", "pod-startup", "--param", "pod_name=web-0",
                    "--param", "pod_namespace=shop"],
    "busiest": ["query", "--db", "{db}", "--named", "busiest-methods", "--param", "minutes=60"],
    "failed-hour": ["query", "--db", "{db}", "--named", "failed-last-hour"],
    "containers": ["query", "--db", "{db}", "SELECT * FROM container_lifecycle"],
    "errors": ["query", "--db", "{db}", "SELECT count(*), max(status_name) FROM errors"],
    "stats-since": ["stats", "--db", "{db}", "--since", "1h"],
    "by-container": ["query", "--db", "{db}", "SELECT count(*) FROM calls WHERE container_id IN "
                     "(SELECT container_id FROM calls WHERE method = 'CreateContainer' LIMIT 3)"],
    # An ad hoc started_at range: schema 12 has no index on started_at (it reads every row).
    "started_at": ["query", "--db", "{db}", "SELECT count(*) FROM calls WHERE started_at >= "
                   "datetime((SELECT max(started_unix) FROM calls) - 3600, 'unixepoch')"],
}


def best(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.monotonic() - started)
        if done.returncode not in (0, 1):  # health exits 1 when it finds something
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--checkout", help="run this checkout's code instead (PYTHONPATH)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], help="leave out a command (repeatable)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.checkout:
        env["PYTHONPATH"] = os.path.abspath(args.checkout)
    for name, command in COMMANDS.items():
        if name in args.skip:
            continue
        argv = [sys.executable, "-m", "cri_proxy", *(part.format(db=args.db) for part in command)]
        print(f"{name:<13} {best(argv, env, args.runs):7.2f} s", flush=True)


if __name__ == "__main__":
    main()
