"""The writer's payload rows: each message body stored once, by its bytes or its sha256.

A batch's messages point at `payloads` rows. The kubelet repeats identical List* requests
every second and most replies are identical too, so a body is looked up before it is stored:
a small body by its bytes (this batch's, then the committed ones), a larger one by its sha256
(this batch's, then a bounded cache of committed ones). A new body is inserted with its JSON,
or capped (size and sha256 kept, data NULL, truncated=1), or stored as a delta against the
last body of its method (packing.Keyframes). `PayloadRows` is that memory and those inserts
for recorder.writer.BatchWriter, on the writer's thread only.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

from cri_proxy.model.call import Direction, Message
from cri_proxy.recorder import json_text, packing
from cri_proxy.recorder.prepared import PreparedCall
from cri_proxy.store import parts

_RESPONSE = Direction.RESPONSE  # bound once: an Enum member off its class is a metaclass lookup

__all__ = ["SMALL_BODY_BYTES", "Pending", "PayloadRows"]

_CACHE_ENTRIES = 4096
# Bodies up to this size are looked up by their bytes first (a dict hashes 32 bytes faster
# than sha256 and its hex digest are made): the kubelet's repeated requests and most replies.
SMALL_BODY_BYTES = 1024
_SMALL_ENTRIES = 4096  # at most 4 MiB of small bodies (shared with the calls that carried them)

# A batch's payload ids not committed yet: by sha256, and by the bytes of the small bodies.
Pending = tuple[dict[str, int], dict[bytes, int]]


def _packable(message: Message) -> bool:
    """A body that may be stored as a delta, or become a keyframe (packing.py)."""
    return message.direction is _RESPONSE and not message.compressed \
        and len(message.data) >= packing.DELTA_MIN_BYTES


def _polled(method: str) -> bool:
    """Replies the kubelet polls for the node's state (packing.JSON_OMIT_BYTES)."""
    return method.startswith("List") or method.endswith("Stats")


class PayloadRows:
    """The payload ids known to be committed, and the keyframes deltas are made against."""

    def __init__(self, max_payload_bytes: int) -> None:
        self.max_payload = max_payload_bytes
        self.keyframes = packing.Keyframes()
        self._cache: OrderedDict[str, int] = OrderedDict()  # sha256 -> payload id
        self._small: dict[bytes, int] = {}  # a small body's bytes -> its payload id (oldest first)

    def forget(self) -> None:
        """Committed ids may be gone (pruned rows); the keyframes are the caller's to keep or drop."""
        self._cache.clear()
        self._small.clear()

    def committed(self, pending: Pending) -> None:
        """The batch whose new ids are `pending` is committed: remember them, within bounds."""
        cache = self._cache
        for sha, payload_id in pending[0].items():
            cache[sha] = payload_id
            cache.move_to_end(sha)
        while len(cache) > _CACHE_ENTRIES:
            cache.popitem(last=False)
        known = self._small
        known.update(pending[1])
        while len(known) > _SMALL_ENTRIES:
            del known[next(iter(known))]
        self.keyframes.committed()

    def id_of(self, conn: sqlite3.Connection, item: PreparedCall, index: int, message: Message,
              pending: Pending) -> int:
        """The id of the message's payload row, inserted if it is new. A small body is known
        by its bytes (this batch's, then the committed ones) before it is hashed at all."""
        data = message.data
        if len(data) > SMALL_BODY_BYTES:
            return self._by_sha(conn, item, index, message, pending[0])
        small = pending[1]
        payload_id = self._small.get(data) or small.get(data)  # ids start at 1; committed ones first, the most hit
        if payload_id is None:
            payload_id = small[data] = self._by_sha(conn, item, index, message, pending[0])
        return payload_id

    def _by_sha(self, conn: sqlite3.Connection, item: PreparedCall, index: int, message: Message,
                pending: dict[str, int]) -> int:
        sha = item.sha(index)
        payload_id = pending.get(sha)
        if payload_id is None and (payload_id := self._cache.get(sha)) is not None:
            self._cache.move_to_end(sha)
        if payload_id is not None:
            return payload_id
        # Not in the cache: most likely new, so insert first, and look the row up only when
        # it was there after all (evicted from the cache, or stored by an earlier run).
        data = message.data
        truncated = len(data) > self.max_payload
        packable = not truncated and _packable(message)
        delta = self.keyframes.delta(item.call.path, data) if packable else None
        text = None
        if not truncated and not (delta is not None and len(data) > packing.JSON_OMIT_BYTES
                                  and _polled(item.call.method)):
            text = json_text.payload_json(item, index)  # a large list reply: element by element
        row: tuple[object, ...]
        in_parts = delta is not None and parts.cut(delta[1])  # a few KiB: parts fill their pages (store/parts.py)
        if delta is None:
            row = (sha, len(data), None if truncated else data, text, int(truncated), None, None)
        else:
            row = (sha, len(data), None, text, 0, parts.MARK if in_parts else delta[1], delta[0])
        cursor = conn.execute(
            "INSERT INTO payloads (sha256, size, data, json, truncated, delta, base_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING", row)
        if cursor.rowcount == 1:
            payload_id = int(cursor.lastrowid or 0)
            if delta is None:
                if packable:
                    self.keyframes.stage(item.call.path, payload_id, data)  # only a row holding its bytes
            else:
                if in_parts:
                    conn.executemany(parts.INSERT, parts.rows(payload_id, delta[1]))
                self.keyframes.link(item.call.path, payload_id, data, delta[2], item.call.started_at)
        else:
            payload_id = int(conn.execute("SELECT id FROM payloads WHERE sha256 = ?", (sha,)).fetchone()[0])
        pending[sha] = payload_id
        return payload_id
