"""Retention: the oldest calls go (with the shapes and bodies no call uses any more) while
the recording is older or larger than asked. Runs on the writer's connection, between
batches; freed pages are reused, so the file stops growing.

A body that is the base of deltas (payloads.base_id: a keyframe, or a link of a chain)
stays while any delta needs it, and goes with the last of them. Metadata sets are left: there are a handful per client,
and finding the unused ones would scan every call row."""

from __future__ import annotations

import sqlite3


def prune(conn: sqlite3.Connection, older_than_unix: float | None, max_bytes: int | None, chunk: int = 200) -> int:
    """Deletes all calls before `older_than_unix`, then more until the data fits in
    `max_bytes`. Returns how many calls went."""
    deleted = 0
    # Bodies shared with newer calls and half-empty pages are not freed, so by size at most
    # half of the calls go in one pass: the newest are never pruned for the oldest's sake.
    budget = conn.execute("SELECT count(*) FROM call_rows").fetchone()[0] // 2
    while True:
        args: tuple[float, ...]
        if older_than_unix is not None:
            where, args = "started_unix < ?", (older_than_unix,)
        elif max_bytes is not None and deleted < budget and used_bytes(conn) > max_bytes:
            where, args = "1", ()
            chunk = min(chunk, budget - deleted)
        else:
            break
        ids = [row[0] for row in conn.execute(
            f"SELECT id FROM call_rows WHERE {where} ORDER BY id LIMIT ?", (*args, chunk))]
        if not ids:
            if older_than_unix is None:
                break
            older_than_unix = None  # age done: now the size
            continue
        delete_calls(conn, ids)
        deleted += len(ids)
    return deleted


def used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])


def delete_calls(conn: sqlite3.Connection, ids: list[int]) -> None:
    """One transaction: the calls, the shapes (schema 12) with their messages and the
    payloads nothing uses any more."""
    marks = ",".join("?" * len(ids))
    conn.execute("BEGIN IMMEDIATE")
    try:
        payloads = [row[0] for row in conn.execute(
            f"SELECT DISTINCT payload_id FROM messages WHERE call_id IN ({marks})", ids)]
        shapes = [(row[0],) * 2 for row in conn.execute(
            f"SELECT DISTINCT shape_id FROM call_rows WHERE id IN ({marks})", ids)]
        conn.execute(f"DELETE FROM call_rows WHERE id IN ({marks})", ids)  # its rollups' trigger reads the shape
        conn.executemany(UNUSED_SHAPE_MESSAGES, shapes)
        conn.executemany(UNUSED_SHAPE, shapes)
        unused_payloads(conn, payloads)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


# A shape no call has any more, and its messages (parameters: its id twice).
UNUSED_SHAPE_MESSAGES = ("DELETE FROM shape_messages WHERE shape_id = ? "
                         "AND NOT EXISTS (SELECT 1 FROM call_rows WHERE shape_id = ?)")
UNUSED_SHAPE = "DELETE FROM call_shapes WHERE id = ? AND NOT EXISTS (SELECT 1 FROM call_rows WHERE shape_id = ?)"
# A body no shape's message carries and no delta needs (parameters: its id three times).
UNUSED_PAYLOAD = (
    "DELETE FROM payloads WHERE id = ? AND NOT EXISTS (SELECT 1 FROM shape_messages WHERE payload_id = ?) "
    "AND NOT EXISTS (SELECT 1 FROM payloads WHERE base_id = ?)"
)


def unused_payloads(conn: sqlite3.Connection, payloads: list[int]) -> None:
    """Deletes those of the bodies that nothing needs any more, then the bases they were
    deltas of, each in its turn, up the chain: a delta's base may be a delta too (a chain,
    recorder/packing.py) whose own call went in an earlier pass, kept then for this one.
    Newest first (a base's id is below its delta's), so a run of them goes in one round."""
    todo = sorted(set(payloads), reverse=True)
    while todo:
        above = dict(_bases_of(conn, todo))  # read before the rows go
        gone = [p for p in todo if conn.execute(UNUSED_PAYLOAD, (p, p, p)).rowcount == 1]
        todo = sorted({above[p] for p in gone if p in above}, reverse=True)


def _bases_of(conn: sqlite3.Connection, payloads: list[int]) -> list[tuple[int, int]]:
    """(id, base id) of those of the bodies that are deltas."""
    found: list[tuple[int, int]] = []
    for i in range(0, len(payloads), 500):
        chunk = payloads[i:i + 500]
        found.extend(conn.execute(f"SELECT id, base_id FROM payloads WHERE base_id IS NOT NULL "
                                  f"AND id IN ({','.join('?' * len(chunk))})", chunk))
    return found


def existing_payloads(conn: sqlite3.Connection, payload_ids: list[int]) -> set[int]:
    """Which of these payload rows are still there."""
    found: set[int] = set()
    for i in range(0, len(payload_ids), 500):
        chunk = payload_ids[i:i + 500]
        found.update(row[0] for row in conn.execute(
            f"SELECT id FROM payloads WHERE id IN ({','.join('?' * len(chunk))})", chunk))
    return found


def rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
