"""Writing rows as an aligned table, JSON, JSON lines or CSV: the output options every read
command shares (after sqlite-utils' `--table/--json/--csv`).

Table output is for people: cells longer than `MAX_CELL` characters (JSON columns, metadata)
end in an ellipsis, line breaks show as `\\n`, binary values as `<N bytes>`, NULL as blank,
numbers are right-aligned. JSON, JSON lines and CSV are for programs and carry every value
in full: binary values as `{"$base64": true, "encoded": ...}` in JSON (sqlite-utils' shape)
and as base64 text in CSV, NULL as `null` in JSON and an empty field in CSV.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMATS = ("table", "json", "jsonl", "csv")
MAX_CELL = 64  # container and pod ids and sha256 digests (64 characters) fit whole
ELLIPSIS = "…"

Row = Sequence[Any]


def check_format(fmt: str, allowed: Sequence[str] = FORMATS) -> str:
    """The format name, or ValueError naming the allowed ones."""
    if fmt not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return fmt


def write_rows(out: TextIO, fmt: str, columns: Sequence[str], rows: Iterable[Row],
               *, max_cell: int | None = MAX_CELL) -> int:  # fmt: skip
    """Writes the rows in the format; returns how many were written. JSON, JSON lines and CSV
    stream row by row; the table needs every row first to size its columns."""
    if fmt == "table":
        return write_table(out, columns, rows, max_cell=max_cell)
    if fmt == "json":
        return write_json(out, columns, rows)
    if fmt == "jsonl":
        return write_jsonl(out, columns, rows)
    if fmt == "csv":
        return write_csv(out, columns, rows)
    raise ValueError(f"unknown output format {fmt!r}")


def json_value(value: Any) -> Any:
    """A SQLite value as JSON can carry it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$base64": True, "encoded": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def row_object(columns: Sequence[str], row: Row) -> dict[str, Any]:
    return {name: json_value(value) for name, value in zip(columns, row)}


def write_json(out: TextIO, columns: Sequence[str], rows: Iterable[Row]) -> int:
    """A JSON array of objects, one line per row."""
    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n " if count else "")
        out.write(json.dumps(row_object(columns, row), ensure_ascii=False))
        count += 1
    out.write("]\n")
    return count


def write_jsonl(out: TextIO, columns: Sequence[str], rows: Iterable[Row]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row_object(columns, row), ensure_ascii=False) + "\n")
        count += 1
    return count


def csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def write_csv(out: TextIO, columns: Sequence[str], rows: Iterable[Row]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([csv_value(v) for v in row])
        count += 1
    return count


def table_cell(value: Any, max_cell: int | None = MAX_CELL) -> str:
    """A value as one short line of a table."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if max_cell is not None and len(text) > max_cell:
        text = text[: max(max_cell - 1, 0)] + ELLIPSIS
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_table(out: TextIO, columns: Sequence[str], rows: Iterable[Row],
                *, max_cell: int | None = MAX_CELL) -> int:  # fmt: skip
    """Columns separated by two spaces under a dashed header; numeric columns right-aligned."""
    if not columns:
        return 0
    raw = list(rows)
    cells = [[table_cell(v, max_cell) for v in row] for row in raw]
    widths = [len(name) for name in columns]
    numeric = [True] * len(columns)
    for row, texts in zip(raw, cells):
        for i, (value, text) in enumerate(zip(row, texts)):
            widths[i] = max(widths[i], len(text))
            if value is not None and not _is_number(value):
                numeric[i] = False

    def line(texts: Sequence[str]) -> str:
        parts = [t.rjust(w) if num else t.ljust(w) for t, w, num in zip(texts, widths, numeric)]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(list(columns)))
    out.write(line(["-" * w for w in widths]))
    for texts in cells:
        out.write(line(texts))
    return len(raw)


Section = tuple[str, Sequence[str], Sequence[Row]]  # name, columns, rows


def write_sections(out: TextIO, fmt: str, sections: Sequence[Section],
                   *, max_cell: int | None = MAX_CELL) -> None:  # fmt: skip
    """Several tables in one output: titled tables; one JSON object of arrays by section;
    JSON lines and CSV rows led by a `section` field (CSV columns are the union)."""
    if fmt == "table":
        for i, (name, columns, rows) in enumerate(sections):
            out.write(("\n" if i else "") + f"{name}:\n")
            if not rows:
                out.write("  (none)\n")
                continue
            write_table(out, columns, rows, max_cell=max_cell)
    elif fmt == "json":
        body = {name: [row_object(columns, r) for r in rows] for name, columns, rows in sections}
        out.write(json.dumps(body, ensure_ascii=False, indent=1) + "\n")
    elif fmt == "jsonl":
        for name, columns, rows in sections:
            write_jsonl(out, ["section", *columns], [(name, *r) for r in rows])
    elif fmt == "csv":
        union: list[str] = []
        for _name, columns, _rows in sections:
            union += [c for c in columns if c not in union]
        padded = []
        for name, columns, rows in sections:
            at = {c: i for i, c in enumerate(columns)}
            padded += [(name, *[r[at[c]] if c in at else None for c in union]) for r in rows]
        write_csv(out, ["section", *union], padded)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
