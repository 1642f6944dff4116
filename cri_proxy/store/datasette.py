"""A datasette metadata file made from storage/README.md, the format's one description.

`cri-proxy datasette-metadata > metadata.json` and `datasette calls.db -m metadata.json` show
each table, view and column of a recording with the words the README gives it, so the docs
and what datasette shows cannot drift apart: there is no second copy to keep in sync.

How the README is read (storage/README.md keeps this shape; tests/store/test_datasette.py
checks every table, view and column of a new recording gets a description):
- a `### \\`name\\`` heading starts a table or view; the prose under it, up to its column
  table, is its description;
- a `| column | meaning |` table gives columns; a cell may name several (`started_at` /
  `started_unix`, or `a`, `b`, `c`), which share the meaning;
- a view that lists its columns inline ("Columns: `call_id`, ...") borrows each one's meaning
  from the tables it says they come from (`calls`, `messages`, `payloads`, `sessions`),
  with `call_id` being `calls.id`.

The named queries (storage/queries/*.sql) come along as datasette's canned queries, each
with its description and parameters, so `pod-startup` is a form in the browser too.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from cri_proxy.store.sql import queries, storage_dir

_HEADING = re.compile(r"^### `([a-z_]+)`\s*$")
_CODE = re.compile(r"`([^`]*)`")
_ROW = re.compile(r"^\|(.+)\|(.+)\|\s*$")
# Where a view's inline-listed columns come from, in the order they are looked up.
SOURCE_TABLES = ("calls", "messages", "payloads", "sessions", "losses")
BORROWED = {"call_id": ("calls", "id")}


@dataclass
class Section:
    """One `### name` of the README: a table or a view."""

    name: str
    prose: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    inline: list[str] = field(default_factory=list)  # columns named in the prose, no meaning


def read_sections(text: str) -> dict[str, Section]:
    """The README's tables and views by name, in their order."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = sections[heading.group(1)] = Section(heading.group(1))
        elif line.startswith("#"):
            current = None
        elif current is not None:
            _read_line(current, line)
    for section in sections.values():
        section.inline = _inline_columns(" ".join(section.prose))
    return sections


def _read_line(section: Section, line: str) -> None:
    row = _ROW.match(line)
    if row is None:
        if not section.columns and line.strip():
            section.prose.append(line.strip())
        return
    names, meaning = row.group(1).strip(), row.group(2).strip()
    if names in ("column", "---") or set(names) <= set("- "):
        return
    for name in _CODE.findall(names):
        section.columns[name] = meaning


def _inline_columns(prose: str) -> list[str]:
    """The code spans after "Columns:", up to "(as in" (which names tables, not columns)."""
    at = prose.find("Columns:")
    if at < 0:
        return []
    end = prose.find("(as in", at)
    return _CODE.findall(prose[at:] if end < 0 else prose[at:end])


def _plain(text: str) -> str:
    """A README phrase as datasette's plain-text description: code spans lose their ticks."""
    return _CODE.sub(r"\1", text)


def _html(text: str) -> str:
    """A README paragraph as HTML: escaped, code spans as <code>."""
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=False))


def column_meanings(sections: dict[str, Section], name: str) -> dict[str, str]:
    """Each documented column of table or view `name` and its meaning (plain text)."""
    section = sections[name]
    out = {col: _plain(meaning) for col, meaning in section.columns.items()}
    for col in section.inline:
        if col in out:
            continue
        table, source_col = BORROWED.get(col, (None, col))
        for source in (table,) if table else SOURCE_TABLES:
            meaning = sections[source].columns.get(source_col) if source in sections else None
            if meaning is not None:
                out[col] = _plain(meaning)
                break
    return out


def metadata(database: str = "calls", readme: str | None = None) -> dict[str, Any]:
    """datasette's metadata for a recording served under the name `database` (the file's
    name without `.db`)."""
    text = readme if readme is not None else (storage_dir() / "README.md").read_text()
    sections = read_sections(text)
    tables = {}
    for name, section in sections.items():
        entry: dict[str, Any] = {}
        if section.prose:
            entry["description_html"] = _html(" ".join(section.prose))
        columns = column_meanings(sections, name)
        if columns:
            entry["columns"] = columns
        tables[name] = entry
    canned = {name: {"sql": query.sql, "description": query.description, "params": list(query.params)}
              for name, query in queries().items()}  # fmt: skip
    return {
        "title": "cri-proxy recording",
        "description_html": "CRI calls recorded by cri-proxy. The format: <code>storage/README.md</code>.",
        "databases": {database: {"tables": tables, "queries": canned}},
    }
