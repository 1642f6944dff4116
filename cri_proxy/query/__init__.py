"""Reading recordings back: `cri-proxy query`, `tail` and `stats` (all read-only).

`DEFAULT_DB` is where the proxy records and where these commands look unless `--db` or the
`CRI_PROXY_DB` environment variable says otherwise; `default_db()` applies the variable.
"""

from __future__ import annotations

import os

from cri_proxy.store import DB_ENV

DEFAULT_DB = "/var/lib/cri-proxy/calls.db"
__all__ = ["DB_ENV", "DEFAULT_DB", "default_db"]


def default_db() -> str:
    """The recording database to use when no `--db` is given: $CRI_PROXY_DB, else DEFAULT_DB."""
    return os.environ.get(DB_ENV) or DEFAULT_DB
