"""Wall-clock times as the recording writes them: 'YYYY-MM-DD HH:MM:SS.mmm' in UTC.

SQLite's datetime() shape plus milliseconds, so that `started_at > datetime('now', '-1 hour')`
compares as text. Here (not in store/) because the CLI parses --since with it in the relay
process, which must not load sqlite3.
"""

from __future__ import annotations

import functools
import time


def utc_text(unix: float) -> str:
    """'YYYY-MM-DD HH:MM:SS.mmm' in UTC for a unix time."""
    seconds, ms = divmod(int(round(unix * 1000)), 1000)
    return f"{_second_text(seconds)}.{ms:03d}"


@functools.lru_cache(maxsize=64)  # calls of a batch share a few seconds; strftime is slow
def _second_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
