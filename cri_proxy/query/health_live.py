"""The live check of `cri-proxy health` (query/health.py): calls open right now, and for how long.

A call is written to the recording when it ends, so the file cannot say which calls are
open. The running proxy can: its metrics endpoint (`--metrics-listen`, served by the
recorder process) exposes `cri_proxy_calls_in_flight` per method and
`cri_proxy_oldest_open_call_age_seconds` (streams held open by design left out). For a
live session (no `ended_at`) whose recorded config names a metrics endpoint, it is read
once, with a short timeout; a stopped recording, or a proxy without metrics, says so in
an `info` line instead.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
from typing import Any

from cri_proxy.model.options import parse_listen
from cri_proxy.query.findings import Finding, Window
from cri_proxy.query.health_checks import DEADLINE_MS, SLOW_WARN_MS, STREAMING
from cri_proxy.query.waterfall import human_ms

TIMEOUT_S = 2.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_S)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        sock.connect(self.unix_path)
        self.sock = sock


def _find(config: Any, key: str) -> Any:
    """The first value of `key` anywhere in the nested config."""
    if isinstance(config, dict):
        if config.get(key):
            return config[key]
        for value in config.values():
            if (found := _find(value, key)) is not None:
                return found
    return None


def scrape(listen: str) -> str:
    """The metrics text of the endpoint `listen` (HOST:PORT or unix:///path); OSError when
    it does not answer."""
    where = parse_listen(listen)
    conn = _UnixConnection(where) if isinstance(where, str) else \
        http.client.HTTPConnection(where[0], where[1], timeout=TIMEOUT_S)  # fmt: skip
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        if response.status != 200:
            raise OSError(f"/metrics answered {response.status}")
        return response.read().decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


def parse(text: str) -> tuple[dict[str, float], float]:
    """(calls in flight by method, oldest open call's age in seconds) from metrics text."""
    in_flight: dict[str, float] = {}
    oldest = 0.0
    for line in text.splitlines():
        if line.startswith("cri_proxy_calls_in_flight{"):
            labels, _, value = line.rpartition(" ")
            method = labels.split('method="', 1)[-1].split('"', 1)[0]
            if float(value) > 0 and method not in STREAMING:
                in_flight[method] = in_flight.get(method, 0) + float(value)
        elif line.startswith("cri_proxy_oldest_open_call_age_seconds "):
            oldest = float(line.split()[-1])
    return in_flight, oldest


def open_calls(conn: sqlite3.Connection, win: Window) -> list[Finding]:
    row = conn.execute("SELECT id, config FROM sessions WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return []  # a stopped recording: nothing is open
    session, config = row
    try:
        listen = _find(json.loads(config or "{}"), "metrics_listen")
    except ValueError:
        listen = None
    grep = " | grep -E 'in_flight|oldest_open'"
    if not listen:
        return [Finding("info", "open_calls", f"session {session} is live, but serves no metrics (--metrics-listen):"
                        " which calls are open right now is not known", "curl -s http://HOST:PORT/metrics" + grep)]  # fmt: skip
    unix = listen.startswith("unix://")
    evidence = (f"curl -s --unix-socket {listen.removeprefix('unix://')} http://localhost/metrics" if unix
                else f"curl -s http://{listen}/metrics") + grep  # fmt: skip
    try:
        in_flight, oldest = parse(scrape(listen))
    except (OSError, ValueError) as exc:
        return [Finding("info", "open_calls", f"session {session} is live, but its metrics at {listen} did not "
                        f"answer ({exc})", evidence)]  # fmt: skip
    age_ms = oldest * 1000
    total = int(sum(in_flight.values()))
    methods = ", ".join(f"{m} ×{int(n)}" for m, n in sorted(in_flight.items(), key=lambda kv: -kv[1]))
    severity = "critical" if age_ms >= DEADLINE_MS else "warning" if age_ms >= SLOW_WARN_MS else "info"
    return [Finding(severity, "open_calls", f"{total} calls open now ({methods or 'none'}), the oldest for "
                    f"{human_ms(age_ms)}", evidence, age_ms)]  # fmt: skip
