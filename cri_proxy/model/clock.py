"""Wall-clock times as the recording writes them: 'YYYY-MM-DD HH:MM:SS.mmm' in UTC.

SQLite's datetime() shape plus milliseconds, so that `started_at > datetime('now', '-1 hour')`
compares as text. Here (not in store/) because the CLI parses --since with it in the relay
process, which must not load sqlite3.
"""

from __future__ import annotations

import calendar
import functools
import re
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


_TEXT = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?)?$")


def text_unix(text: str) -> float:
    """The unix time a `started_at` text names (or its day, minute or second: the start of it)."""
    match = _TEXT.match(text)
    if match is None:
        raise ValueError(f"not a UTC time as the recording writes it: {text!r}")
    year, month, day, hour, minute, second, fraction = match.groups()
    whole = calendar.timegm((int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)))
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def started_sql(since_at: str, until_minute: str | None = None, alias: str = "") -> str:
    """SQL for `started_at >= since_at` (and, with `until_minute`, `started_at < until_minute
    || ':~'`, the calls up to the end of that minute) that searches calls_started_unix:
    schema 12 derives `started_at` from `started_unix`, with no index of its own. The
    started_unix range is a millisecond wider either side (the text rounds to the millisecond),
    then the text itself is compared, so the answer is the text filter's."""
    a = f"{alias}." if alias else ""
    found = f"{a}started_unix >= {text_unix(since_at) - 0.001!r} AND {a}started_at >= '{since_at}'"
    if until_minute is not None:
        found += f" AND {a}started_unix < {text_unix(until_minute) + 60.001!r} AND {a}started_at < '{until_minute}:~'"
    return found
