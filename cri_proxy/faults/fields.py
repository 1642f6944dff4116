"""The small value parsers of a fault rules file, collecting problems instead of raising.

Each takes the raw YAML value and the place it came from, and on a bad value records one
line in `Problems` and returns a harmless default, so that one pass finds every mistake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


class Problems:
    """One line per mistake, each naming the file and the rule."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.lines.append(f"{self.source}: {where}: {what}")


_UNITS = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


def duration(value: Any, where: str, problems: Problems) -> float:
    """Seconds in 250ms / 15s / 2m / 1h / a bare number of seconds; 0.0 after a problem."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        for suffix, scale in _UNITS:
            if text.endswith(suffix):
                number = text[: -len(suffix)]
                if number.replace(".", "", 1).isdigit():
                    return float(number) * scale
                break
    problems.add(where, f"{value!r}: expected a duration such as 250ms, 15s or 2m")
    return 0.0


def optional_int(value: Any, where: str, problems: Problems) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.add(where, f"{value!r}: expected a whole number of calls, 1 or more")
        return None
    return value


def text_list(value: Any, where: str, problems: Problems) -> tuple[str, ...]:
    """A glob or a list of globs."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        problems.add(where, f"{value!r}: expected a glob such as 'Pull*' or a list of them")
        return ()
    return tuple(values)


@dataclass(frozen=True, slots=True)
class Window:
    """When a rule applies: seconds since the rules were loaded (`after`/`for`), or wall-clock
    Unix times (`from`/`until`); None is open-ended."""

    start: float | None = None
    end: float | None = None
    wall_clock: bool = False

    def contains(self, now_unix: float, loaded_unix: float) -> bool:
        at = now_unix if self.wall_clock else now_unix - loaded_unix
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


def window(value: Any, where: str, problems: Problems) -> Window:
    """{after: D, for: D} or {from: TIME, until: TIME}; always open after a problem."""
    if value is None:
        return Window()
    if not isinstance(value, dict) or not value or set(value) - {"after", "for", "from", "until"}:
        problems.add(where, "expected {after: D, for: D} or {from: TIME, until: TIME}")
        return Window()
    if {"after", "for"} & set(value) and {"from", "until"} & set(value):
        problems.add(where, "use either after/for (since start) or from/until (times), not both")
        return Window()
    if "from" in value or "until" in value:
        start = _time(value.get("from"), f"{where}.from", problems)
        end = _time(value.get("until"), f"{where}.until", problems)
        return Window(start, end, wall_clock=True)
    start_s = duration(value["after"], f"{where}.after", problems) if "after" in value else 0.0
    length = duration(value["for"], f"{where}.for", problems) if "for" in value else None
    return Window(start_s, start_s + length if length is not None else None)


def _time(value: Any, where: str, problems: Problems) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # YAML reads an unquoted timestamp itself
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            problems.add(where, f"{value!r}: expected an RFC 3339 time such as 2026-12-01T03:12:00Z")
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
