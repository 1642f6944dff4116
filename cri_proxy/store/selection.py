"""Which calls of a recording a reader wants, as SQL over the `calls` table (alias `c`)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cri_proxy.model.errors import ConfigError, StorageError

# Sessions that `cri-proxy replay --db-out` recorded: not part of what the node did.
REPLAY_SESSIONS = ("SELECT id FROM sessions WHERE json_valid(config) "
                   "AND json_extract(config, '$.replay_of') IS NOT NULL")  # fmt: skip
NO_SESSION = "no session {} in the recording (see: cri-proxy stats)"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which calls of a recording: one session (None: every session except replays'), a time
    range (unix seconds, both ends included), and an extra SQL condition on `calls` columns."""

    session: int | None = None
    since: float | None = None
    until: float | None = None
    where: str | None = None

    def conditions(self) -> tuple[list[str], list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        if self.session is not None:
            clauses.append("c.session_id = ?")
            args.append(self.session)
        else:  # replays recorded into the same file are not part of what was recorded
            clauses.append(f"c.session_id NOT IN ({REPLAY_SESSIONS})")
        for bound, op in ((self.since, ">="), (self.until, "<=")):
            if bound is not None:
                clauses.append(f"c.started_unix {op} ?")
                args.append(bound)
        if self.where:
            clauses.append(self.where)
        return clauses, args

    def sql_where(self) -> tuple[str, list[object]]:
        """' WHERE (...) AND (...)' (or '') and its arguments."""
        clauses, args = self.conditions()
        return (" WHERE " + " AND ".join(f"({c})" for c in clauses) if clauses else ""), args

    def error(self, exc: sqlite3.Error) -> ConfigError:
        """A failed selection query: the user's --where is what can be wrong."""
        return ConfigError(f"--where {self.where!r}: {exc}")


SESSION_EXISTS = "SELECT 1 FROM sessions WHERE id = ?"


def session_exists(conn: sqlite3.Connection, session: int) -> bool:
    return conn.execute(SESSION_EXISTS, (session,)).fetchone() is not None


def check_session(conn: sqlite3.Connection, session: int | None) -> None:
    """StorageError (one line) when `session` is given and the recording has no such session."""
    if session is not None and not session_exists(conn, session):
        raise StorageError(NO_SESSION.format(session))
