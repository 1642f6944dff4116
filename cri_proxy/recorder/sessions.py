"""The writer's bookkeeping rows: this run's `sessions` row and its `losses` episodes.

The session row is written when the file is opened (or re-created), its counters with every
batch, in the batch's own transaction, so the counts on disk always match the calls there.
A run that never ended its row (killed with its recorder) is noted by the next one as a loss
episode of its own: how many calls went missing cannot be known, but that some may have can.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from dataclasses import asdict, dataclass

from cri_proxy import __version__
from cri_proxy.model.call import FORMAT_VERSION
from cri_proxy.model.session import LossEpisode, SessionInfo
from cri_proxy.store import db


@dataclass(slots=True)
class Totals:
    """The recorder's counters, written to the session row with each batch."""

    recorded: int = 0
    lost: int = 0
    loss_episodes: int = 0


def has_session(conn: sqlite3.Connection, session_id: int | None, session: SessionInfo) -> bool:
    """Whether the open file still holds this run's row (it may be a new or replaced file)."""
    if session_id is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM sessions WHERE id = ? AND started_unix = ? AND pid = ?",
        (session_id, session.started_unix, session.pid),
    ).fetchone()
    return row is not None


def insert_session(conn: sqlite3.Connection, s: SessionInfo, totals: Totals) -> int:
    cursor = conn.execute(
        "INSERT INTO sessions (started_at, started_unix, cri_proxy_version, format_version, "
        "hostname, pid, config, listen, runtime_endpoint, image_endpoint, runtime_api, "
        "image_api, calls_recorded, calls_lost, loss_episodes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (db.utc_text(s.started_unix), s.started_unix, __version__, FORMAT_VERSION,
         socket.gethostname(), s.pid, json.dumps(s.config, default=str), s.listen,
         s.runtime_endpoint, s.image_endpoint, s.runtime_api, s.image_api,
         totals.recorded, totals.lost, totals.loss_episodes),
    )  # fmt: skip
    return int(cursor.lastrowid or 0)  # an INSERT into a rowid table always sets it


def update_session(conn: sqlite3.Connection, session_id: int | None, session: SessionInfo, totals: Totals,
                   written: int, changed: bool) -> None:
    """The counters (counting `written` more calls recorded), and the session's fields if `changed`."""
    conn.execute(
        "UPDATE sessions SET calls_recorded = ?, calls_lost = ?, loss_episodes = ? WHERE id = ?",
        (totals.recorded + written, totals.lost, totals.loss_episodes, session_id),
    )
    if changed:
        s = asdict(session)
        conn.execute(
            "UPDATE sessions SET listen = ?, runtime_endpoint = ?, image_endpoint = ?, "
            "runtime_api = ?, image_api = ?, config = ? WHERE id = ?",
            (s["listen"], s["runtime_endpoint"], s["image_endpoint"], s["runtime_api"],
             s["image_api"], json.dumps(s["config"], default=str), session_id),
        )  # fmt: skip


def end_session(conn: sqlite3.Connection, session_id: int | None, ended_unix: float, totals: Totals) -> None:
    conn.execute(
        "UPDATE sessions SET ended_at = ?, calls_recorded = ?, calls_lost = ?, "
        "loss_episodes = ? WHERE id = ?",
        (db.utc_text(ended_unix), totals.recorded, totals.lost, totals.loss_episodes, session_id),
    )  # fmt: skip


def insert_losses(conn: sqlite3.Connection, session_id: int | None, losses: list[LossEpisode]) -> None:
    conn.executemany(
        "INSERT INTO losses (session_id, started_at, ended_at, reason, calls_lost) "
        "VALUES (?, ?, ?, ?, ?)",
        [(session_id, db.utc_text(e.started_unix),
          None if e.ended_unix is None else db.utc_text(e.ended_unix), e.reason, e.calls_lost)
         for e in losses],
    )  # fmt: skip


UNCLEAN = "the previous run (session {id}) ended unclean: the calls it had not written are missing, uncounted"


def unclean_previous(conn: sqlite3.Connection) -> LossEpisode | None:
    """The latest session in the file, if it never ended (its proxy and recorder were killed,
    or the machine stopped) and is not a proxy still running on this host: what the new
    session records as a loss, from that run's start to now, its count unknown."""
    row = conn.execute("SELECT id, started_unix, hostname, pid FROM sessions WHERE ended_at IS NULL "
                       "AND id = (SELECT max(id) FROM sessions)").fetchone()
    if row is None:
        return None
    session_id, started_unix, host, pid = row
    if host == socket.gethostname() and isinstance(pid, int) and _alive(pid):
        return None  # another proxy recording here (or, after a reboot, a process that took its pid)
    return LossEpisode(float(started_unix or 0.0), time.time(), UNCLEAN.format(id=session_id), 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True
