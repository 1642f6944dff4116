"""Comparing a replayed answer with the recorded one: status code, then a structural diff of
the decoded JSON that leaves out what must differ between two runs.

Paths are dotted with list positions in brackets: `containers[0].metadata.name`. An ignore
glob (fnmatch) is matched against the path with and without its list positions
(`containers.metadata.name`), so `*created_at`, `containers.*.pid` or `containers[*].pid`
all work (`[0]` and `[*]` in a glob are list positions, not character classes). Lists of
objects that carry an `id` (ListContainers, ListPodSandbox, ListImages...) are paired by id,
with paths like `containers[id=3f2a...].state`, so a runtime that lists in another order
still matches and a missing object is one difference; when the user ignores those ids
(`--ignore 'images[*].id'`) they are compared by position instead.

Verbose status calls carry a JSON document inside a string (`info.info`, as containerd
answers them). Two such strings are compared as the JSON they hold, at the same path
(`info.info.config.metadata.name`), and inside them every pid, id and timestamp is left out,
whatever its key's spelling (`pid`, `sandboxID`, `createdAt`, `started_at`...), and so is a
value that is itself an id (64 hex digits), a time (RFC 3339) or a /proc/<pid> path. A
value the recording redacted (`[redacted]`, `KEY=[redacted]`) matches whatever is answered.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from cri_proxy.recorder.redact import REDACTED

# What differs between any two runs of the same calls: times, counters, process ids, the
# single-use streaming URLs, and the fields derived from them.
DEFAULT_IGNORE: tuple[str, ...] = (
    "*created_at", "*started_at", "*finished_at", "*timestamp", "*exited_at",
    "*usage_bytes*", "*usage_core_nano_seconds*", "*usage_nano_cores*", "*working_set_bytes*",
    "*available_bytes*", "*rss_bytes*", "*page_faults*", "*major_page_faults*", "*used_bytes*",
    "*inodes_used*", "*inodes_free*", "*capacity_bytes*", "*rx_bytes*", "*tx_bytes*", "*rx_errors*",
    "*tx_errors*", "*pid", "*pids*", "url", "*.cpu.*", "*.memory.*", "*.swap.*", "*.io.*",
)

_INDEX = re.compile(r"\[(\d+|id=[^\]]*)\]")
_MAX_DIFFS = 50  # per call: enough to see what differs, bounded for huge lists
_SEEN_LIMIT = 100_000  # paths whose ignore answer is kept


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: absent on a side is None (`"<absent>"` in reports)."""

    path: str
    recorded: Any
    replayed: Any

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "recorded": self.recorded, "replayed": self.replayed}


class Comparer:
    """Diffs decoded messages with the default ignore globs plus the user's."""

    def __init__(self, ignore: tuple[str, ...] = (), *, defaults: bool = True) -> None:
        self.ignore = tuple(_literal_brackets(g) for g in (DEFAULT_IGNORE if defaults else ()) + tuple(ignore))
        # One regex for every glob (what fnmatchcase does glob by glob), and each path's answer
        # kept: a node's calls list the same containers again and again, so its paths come back.
        pattern = "|".join(f"(?:{fnmatch.translate(glob)})" for glob in self.ignore)
        self._match = re.compile(pattern).match if pattern else None
        self._seen: dict[str, bool] = {}

    def ignored(self, path: str) -> bool:
        known = self._seen.get(path)
        if known is not None:
            return known
        bare = _INDEX.sub("", path)
        answer = self._match is not None and bool(self._match(path) or self._match(bare))
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()  # paths with ids grow without end over a long replay
        self._seen[path] = answer
        return answer

    def diff(self, recorded: Any, replayed: Any, path: str = "") -> list[Difference]:
        out: list[Difference] = []
        self._diff(recorded, replayed, path, out)
        return out[:_MAX_DIFFS]

    def _diff(self, old: Any, new: Any, path: str, out: list[Difference], verbose: bool = False) -> None:
        if len(out) >= _MAX_DIFFS or (path and self.ignored(path)) or (verbose and _volatile_key(path)):
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                sub = f"{path}.{key}" if path else key
                if key not in old or key not in new:
                    if not self.ignored(sub) and not (verbose and _volatile_key(sub)):
                        out.append(Difference(sub, old.get(key), new.get(key)))
                    continue
                self._diff(old[key], new[key], sub, out, verbose)
        elif isinstance(old, list) and isinstance(new, list):
            # Inside a verbose document ids are volatile: items are paired by position there.
            if not verbose and _has_ids(old) and _has_ids(new) and not self.ignored(f"{path}[0].id"):
                self._diff_by_id(old, new, path, out)
                return
            for i in range(max(len(old), len(new))):
                sub = f"{path}[{i}]"
                if i >= len(old) or i >= len(new):
                    out.append(Difference(sub, old[i] if i < len(old) else None, new[i] if i < len(new) else None))
                    continue
                self._diff(old[i], new[i], sub, out, verbose)
        elif isinstance(old, str) and isinstance(new, str) and old != new:
            inner = _json_document(old), _json_document(new)
            if inner[0] is not None and inner[1] is not None:
                self._diff(inner[0], inner[1], path, out, verbose=True)
            elif not (verbose and _volatile_value(old) and _volatile_value(new)) and not _redacted_match(old, new):
                out.append(Difference(path, old, new))
        elif old != new:
            out.append(Difference(path, old, new))

    def _diff_by_id(self, old: list[Any], new: list[Any], path: str, out: list[Difference]) -> None:
        """Objects with ids are paired by id (`containers[id=...]`): listing order does not matter."""
        olds, news = {i["id"]: i for i in old}, {i["id"]: i for i in new}
        for key in sorted(set(olds) | set(news)):
            sub = f"{path}[id={key}]"
            if key in olds and key in news:
                self._diff(olds[key], news[key], sub, out)
            elif len(out) < _MAX_DIFFS:
                out.append(Difference(sub, olds.get(key), news.get(key)))


_VOLATILE_VALUE = re.compile(
    r"^(?:[0-9a-f]{64}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)|/proc/\d+(?:/.*)?)$")


def _json_document(text: str) -> Any:
    """The object or list a string holds as JSON (verbose `info` values), else None."""
    if not text.startswith(("{", "[")):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, (dict, list)) else None


def _volatile_key(path: str) -> bool:
    """A pid, id or time inside a verbose JSON document, by the last key of its path."""
    key = _INDEX.sub("", path).rpartition(".")[2]
    low = key.lower()
    return (low.endswith(("pid", "id", "_at", "time", "timestamp")) or key.endswith("At")
            or low.startswith("timestamp"))  # fmt: skip


def _volatile_value(value: str) -> bool:
    return bool(_VOLATILE_VALUE.match(value))


def _redacted_match(recorded: str, replayed: str) -> bool:
    """The recording blanked this secret (`[redacted]`, or `KEY=[redacted]` in an OCI env
    list): whatever the runtime answers now cannot be compared with it."""
    if recorded == REDACTED:
        return True
    key, sep, value = recorded.partition("=")
    return bool(sep) and value == REDACTED and replayed.startswith(key + "=")


def _literal_brackets(glob: str) -> str:
    """`images[0].id`, `images[*].id` and `images[id=X].id` name list items, not fnmatch
    character classes."""
    return re.sub(r"\[(\d+|\*|id=[^\]]*)\]", lambda m: "[[]" + m.group(1) + "[]]", glob)


def _has_ids(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items)


def short(value: Any, limit: int = 80) -> str:
    """A value as one short line for the terminal."""
    text = "<absent>" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
