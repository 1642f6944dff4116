"""The window health looks at (a live recording's ends now, a finished one's at its last
call) and the order findings come in (worst first)."""

from __future__ import annotations

import pathlib
import sqlite3

from cri_proxy.model.clock import utc_text
from cri_proxy.query.findings import Finding, ordered, unhealthy, window
from tests.helpers.calls import T0, make_call, record


def test_the_window_is_the_last_hour_of_a_finished_recording(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "calls.db"
    record(db, [make_call("Version", started=T0), make_call("Version", started=T0 + 7200)])
    conn = sqlite3.connect(db)
    try:
        win = window(conn, None, now=T0 + 10 * 86400)  # long after: the recording's own last hour
        assert (win.since_at, win.until_unix) == (utc_text(T0 + 3600), T0 + 7200)
        assert win.minute == utc_text(T0 + 3600)[:16]
        assert window(conn, "2027-01-15 09:30:00", now=T0).since_at == "2027-01-15 09:30:00"
        conn.execute("UPDATE sessions SET ended_at = NULL")  # a proxy still recording: up to now
        assert window(conn, None, now=T0 + 9000).until_unix == T0 + 9000
    finally:
        conn.close()


def test_findings_worst_first_and_only_info_is_healthy() -> None:
    info = Finding("info", "relist", "relists every 1.0 s", "q", weight=5)
    warn_small = Finding("warning", "failing_probe", "one probe", "q", weight=1)
    warn_big = Finding("warning", "error_burst", "a burst", "q", weight=9)
    critical = Finding("critical", "relist", "PLEG", "q")
    assert ordered([info, warn_small, critical, warn_big]) == [critical, warn_big, warn_small, info]
    assert not unhealthy([info]) and unhealthy([info, warn_small])
