"""Finds and loads the SQL files of the recording format (the repository's `storage/` folder).

The top-level `storage/` folder is their one home. A built wheel carries a copy at
`cri_proxy/store/storage/` (setup.py's build hook makes it), which is looked at first; a
checkout or an editable install reads the top-level folder itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """A canned investigation query; its header comment gives name, description, parameters."""

    name: str
    description: str
    params: dict[str, str]  # parameter name (":name" in the SQL) -> what it means
    sql: str


def storage_dir() -> Path:
    """The folder holding migrations/, views.sql and queries/."""
    for candidate in (_HERE / "storage", _HERE.parent.parent / "storage"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise FileNotFoundError(f"the storage SQL files are missing (looked in {_HERE / 'storage'} "
                            f"and {_HERE.parent.parent / 'storage'})")


def migrations() -> list[Migration]:
    """The numbered migrations, in order."""
    found = []
    for path in sorted((storage_dir() / "migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3... without gaps: {versions}")
    return found


def views() -> str:
    return (storage_dir() / "views.sql").read_text()


def view_names() -> list[str]:
    return re.findall(r"^CREATE VIEW (\w+)", views(), flags=re.MULTILINE)


def parse_query(name: str, text: str) -> NamedQuery:
    """Reads a query file's header: `-- name:`, `-- description:` (may continue on the
    following `--` lines) and `-- param: NAME  meaning` lines."""
    header: dict[str, str] = {}
    params: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        body = line[2:].strip()
        key, sep, value = body.partition(":")
        if sep and key in ("name", "description"):
            header[key] = value.strip()
            last = key
        elif sep and key == "param":
            pname, _, meaning = value.strip().partition(" ")
            params[pname] = meaning.strip()
            last = ""
        elif last == "description" and body:
            header["description"] += " " + body
    return NamedQuery(header.get("name", name), header.get("description", ""), params, text)


def queries() -> dict[str, NamedQuery]:
    """The named queries of storage/queries/, by name."""
    found = {}
    for path in sorted((storage_dir() / "queries").glob("*.sql")):
        query = parse_query(path.stem, path.read_text())
        found[query.name] = query
    return found
