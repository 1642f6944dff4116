"""`cri-proxy stats --clients`: calls by the client process that made them (0006_clients).

One row per client name, user and executable (every crictl run is a new pid, but one
client): its calls, errors, state-changing calls (model.cri.MUTATING: "did the kubelet or
someone's crictl remove that pod?"), how many processes, and its first and last call. Calls
without a client row (recorded before schema 6, or served by the bridge) are grouped by the
pid they have, as `pid:N`, else `unknown`. Over the same `--since` and `--session` selection
as the rest of `stats`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from cri_proxy.model.clock import started_sql
from cri_proxy.model.cri import MUTATING
from cri_proxy.model.errors import StorageError
from cri_proxy.model.status import FAILED_SQL as FAILED
from cri_proxy.query.output import Section

CLIENT_COLUMNS = ["client", "uid", "exe", "processes", "calls", "errors", "changes", "first_call", "last_call"]

_CHANGES = "c.method IN ({})".format(", ".join(f"'{m}'" for m in sorted(MUTATING)))
_CLIENTS = f"""
SELECT COALESCE(cl.name, CASE WHEN c.peer_pid IS NULL THEN 'unknown' ELSE 'pid:' || c.peer_pid END) AS client,
       COALESCE(cl.uid, c.peer_uid) AS uid, cl.exe, COUNT(DISTINCT c.peer_pid), COUNT(*),
       SUM({FAILED}), SUM({_CHANGES}), MIN(c.started_at), MAX(c.started_at)
FROM calls AS c LEFT JOIN clients AS cl ON cl.id = c.client_id
WHERE {{where}}
GROUP BY 1, 2, 3
ORDER BY COUNT(*) DESC, 1
"""


def compute(conn: sqlite3.Connection, *, since_at: str | None = None, session: int | None = None) -> Section:
    """The `clients` section for the calls `since_at` (started_at text) and of `session`."""
    where, params = ["1"], []  # type: tuple[list[str], list[Any]]
    if since_at is not None:
        where.append(started_sql(since_at, alias="c"))  # through calls_started_unix (schema 12)
    if session is not None:
        where.append("c.session_id = ?")
        params.append(session)
    try:
        rows = conn.execute(_CLIENTS.format(where=" AND ".join(where)), params).fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read calls by client: {exc}") from exc
    return ("clients", CLIENT_COLUMNS, rows)
