"""Wall-clock times as the recording writes them: 'YYYY-MM-DD HH:MM:SS.mmm' in UTC.

SQLite's datetime() shape plus milliseconds, so that `started_at > datetime('now', '-1 hour')`
compares as text. Here (not in store/) because the CLI parses --since with it in the relay
process, which must not load sqlite3.
"""

from __future__ import annotations

import functools
import time


def utc_text(unix: float) -> str:
    """'YYYY-MM-DD HH:MM:SS.mmm' in UTC for a unix time, the millisecond rounded half up:
    the text the `calls` view derives from `started_unix` (schema 12) with SQLite's round(),
    which rounds a tie up where Python's round() would round it to even."""
    seconds, ms = divmod(int(unix * 1000 + 0.5), 1000)
    return f"{_second_text(seconds)}.{ms:03d}"


@functools.lru_cache(maxsize=64)  # calls of a batch share a few seconds; strftime is slow
def _second_text(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
