"""Retention: the oldest calls go (with their messages, and bodies no call uses any more)
while the recording is older or larger than asked. Runs on the writer's connection, between
batches; freed pages are reused, so the file stops growing."""

from __future__ import annotations

import sqlite3


def prune(conn: sqlite3.Connection, older_than_unix: float | None, max_bytes: int | None, chunk: int = 200) -> int:
    """Deletes all calls before `older_than_unix`, then more until the data fits in
    `max_bytes`. Returns how many calls went."""
    deleted = 0
    # Bodies shared with newer calls and half-empty pages are not freed, so by size at most
    # half of the calls go in one pass: the newest are never pruned for the oldest's sake.
    budget = conn.execute("SELECT count(*) FROM calls").fetchone()[0] // 2
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
            f"SELECT id FROM calls WHERE {where} ORDER BY id LIMIT ?", (*args, chunk))]
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
    """One transaction: the calls, their messages, and the payloads nothing uses any more."""
    marks = ",".join("?" * len(ids))
    conn.execute("BEGIN IMMEDIATE")
    try:
        payloads = [row[0] for row in conn.execute(
            f"SELECT DISTINCT payload_id FROM messages WHERE call_id IN ({marks})", ids)]
        conn.execute(f"DELETE FROM messages WHERE call_id IN ({marks})", ids)
        conn.execute(f"DELETE FROM calls WHERE id IN ({marks})", ids)
        conn.executemany(
            "DELETE FROM payloads WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE payload_id = ?)",
            [(p, p) for p in payloads])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
