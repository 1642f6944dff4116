"""Reading the examples' files as systemd and the kubelet would: unit syntax, time spans, and
paths with /var/run folded into /run (tests/test_examples.py's checkers use these)."""

from __future__ import annotations

import posixpath
import re

Unit = dict[str, dict[str, list[str]]]


def read_unit(text: str) -> Unit:
    """systemd's unit syntax: [Section], Key=value (repeatable), `\\` continues, # ; comment."""
    unit: Unit = {}
    section: str | None = None
    pending = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith(("#", ";")):
            continue  # systemd skips comment lines, also inside a continued line
        line = pending + line
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, {})
            continue
        assert section is not None, f"line {lineno}: {raw!r} comes before any [Section]"
        assert "=" in line, f"line {lineno}: {raw!r} is neither Key=value, a [Section] nor a comment"
        key, value = line.split("=", 1)
        unit[section].setdefault(key.strip(), []).append(value.strip())
    assert not pending, "the file ends inside a continued (\\) line"
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    """All space-separated words of every `key=` line; an empty assignment resets the list."""
    words: list[str] = []
    for value in unit.get(section, {}).get(key, []):
        words = words + value.split() if value else []
    return words


def single(unit: Unit, section: str, key: str) -> str:
    found = unit.get(section, {}).get(key, [])
    assert found, f"[{section}] has no {key}="
    return found[-1]


def timespan_seconds(value: str) -> float:
    """A systemd time span ("20", "20s", "1min 30s") in seconds."""
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 0.001, "msec": 0.001,
             "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and re.fullmatch(r"(\s*\d+(\.\d+)?\s*[a-z]*)+\s*", value), f"{value!r} is not a time span"
    total = 0.0
    for number, unit in parts:
        assert unit in units, f"{value!r}: unknown time unit {unit!r}"
        total += float(number) * units[unit]
    return total


def host_path(path: str) -> str:
    """/var/run is a symlink to /run on every systemd host."""
    path = posixpath.normpath(path)
    return "/run" + path[len("/var/run"):] if path == "/var/run" or path.startswith("/var/run/") else path


def is_under(path: str, folder: str) -> bool:
    path, folder = host_path(path), host_path(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")
