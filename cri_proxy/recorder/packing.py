"""What the writer stores once or as a delta (schema 6): metadata sets and body keyframes.

Metadata: a call's request metadata, response metadata and trailers are each stored once
per distinct text in `metadata_sets` and the call's row points at them. grpc-go puts a
`grpc-timeout` on every request whose value differs every time (the deadline left): the set
is stored with that value blank and the row keeps the value, as a number since schema 14
(`call_rows.timeout_code`, timeout_code() below), so one set serves every call of a client;
the `calls` view puts the value back.

Bodies: the writer keeps, per method, the last response body it stored as it is (the
keyframe). A new response of that method of at least DELTA_MIN_BYTES is compressed with the
keyframe as the dictionary (store/bodies.py); when the delta is at most a quarter of the
body, the delta is stored, otherwise the body is stored as it is and becomes the keyframe.
Keyframes are staged during a batch and only trusted by later batches once the batch
committed, so a delta never points at a row that a rolled-back (or crashed) batch lost.

Chains: a stats reply resembles the one before it far more than the keyframe, whose numbers
drift further every call (ListContainerStats of benchmarks/storage.py's 80-pod node: 3.5 KB
against the previous reply all day, 3.9 KB against the one 80 s before, against the keyframe
3.5 KB at first, 5.0 after an hour, 8.0 after a day). So a delta's base is the method's last
*link* (a delta) when there is one, up to MAX_CHAIN deltas from the keyframe; then the next
delta is against the keyframe again and a new chain starts from it. A reader rebuilds a body
through at most MAX_CHAIN deltas (store/chains.py). Parsing a base costs about 16 ms of CPU
for a 107 KB reply, to write and to read, so the base moves on at most every CHAIN_STEP_S of
the calls' own time per method (an hour of that node, against a base every reply: 163 B a
call against 159, 3.9 s of writer CPU against 9.3, 3.6 s to read back against 10.9), and a
flood of distinct replies is compressed against the same link. Links are staged and
committed as keyframes are.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass

from cri_proxy.model.call import Metadata
from cri_proxy.recorder.clients import RowIds
from cri_proxy.store import bodies
from cri_proxy.store.rows import metadata_text

Route = tuple[str, str, "str | None", "str | None", "str | None"]  # rows.ROUTE_COLUMNS

DELTA_MIN_BYTES = 2048  # below it the zstd frame's overhead eats what a delta saves
DELTA_MAX_RATIO = 4  # a delta is kept when at most 1/4 of the body: else the body "does not resemble"
KEYFRAME_BYTES = 4 << 20  # keyframes (and their compressors' tables) kept in memory, all methods together
# A delta of a List* or *Stats reply (node state the kubelet polls, whose counters change on
# every call) over this size keeps no JSON: a 108 KB ListContainerStats reply decodes to
# 222 KB of JSON, which would cost 25 times its delta. Its bytes still read back exactly.
JSON_OMIT_BYTES = 8 << 10
MAX_CHAIN = 8  # deltas a reader may decode through to rebuild one body (chains.MAX_DEPTH above it)
CHAIN_STEP_S = 60.0  # a method's base moves to a newer delta at most this often (the calls' times)
_CACHE_ENTRIES = 4096
_TIMEOUT = re.compile(r"\d{1,8}[HMSmun]")  # gRPC's TimeoutValue TimeoutUnit: nothing to escape in JSON
TIMEOUT_FIELD = "grpc-timeout"


def split_timeout(metadata: Metadata) -> tuple[Metadata, str | None]:
    """The metadata with its one grpc-timeout value blanked, and that value; unchanged and
    None when there is no such field, more than one, or a value of another shape."""
    found = None
    for i, (name, value) in enumerate(metadata):
        if name == TIMEOUT_FIELD:
            if found is not None or not _TIMEOUT.fullmatch(value):
                return metadata, None
            found = i
    if found is None:
        return metadata, None
    blanked = list(metadata)
    blanked[found] = (TIMEOUT_FIELD, "")
    return blanked, metadata[found][1]


_UNITS = "HMSmun"  # a unit's index in it is the code's low 3 bits (0014_timeout_codes.sql)


@functools.lru_cache(maxsize=4096)  # a client's deadlines repeat (the same timeout, a few us left)
def timeout_code(value: str) -> tuple[str | None, int | None]:
    """A split_timeout value as `call_rows` stores it (schema 14): (None, value * 8 + the
    unit's index in "HMSmun"), a 4-byte integer instead of about 8 bytes of text; or (the text,
    None) when the number would not spell it back the same (leading zeros), as the view does."""
    digits, unit = value[:-1], value[-1:]
    index = _UNITS.find(unit)
    if index < 0 or not digits.isdigit() or str(int(digits)) != digits:
        return value, None
    return None, int(digits) * 8 + index


class MetadataSets:
    """Ids of the sets stored in the open file (a bounded cache of what was committed)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._pending: dict[str, int] = {}

    def id_of(self, conn: sqlite3.Connection, metadata: Metadata) -> int | None:
        text = metadata_text(metadata)
        if text is None:
            return None
        set_id = self._pending.get(text)
        if set_id is None and (set_id := self._ids.get(text)) is not None:
            self._ids.move_to_end(text)
        if set_id is not None:
            return set_id
        sha = hashlib.sha256(text.encode()).hexdigest()
        cursor = conn.execute("INSERT INTO metadata_sets (sha256, pairs) VALUES (?, ?) "
                              "ON CONFLICT (sha256) DO NOTHING", (sha, text))
        if cursor.rowcount == 1:
            set_id = int(cursor.lastrowid or 0)
        else:
            set_id = int(conn.execute("SELECT id FROM metadata_sets WHERE sha256 = ?", (sha,)).fetchone()[0])
        self._pending[text] = set_id
        return set_id

    def committed(self) -> None:
        for text, set_id in self._pending.items():
            self._ids[text] = set_id
            self._ids.move_to_end(text)
        self._pending.clear()
        while len(self._ids) > _CACHE_ENTRIES:
            self._ids.popitem(last=False)

    def clear(self) -> None:
        """After a rollback (pending ids may not exist), a new file or pruning."""
        self._ids.clear()
        self._pending.clear()


_INSERT_ROUTE = ("INSERT INTO routes (service, path, client_api, upstream_api, upstream) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT DO NOTHING")
_FIND_ROUTE = ("SELECT id FROM routes WHERE service = ? AND path = ? AND ifnull(client_api, '') = ifnull(?, '') "
               "AND ifnull(upstream_api, '') = ifnull(?, '') AND ifnull(upstream, '') = ifnull(?, '')")


class Routes(RowIds[Route]):
    """Ids of the `routes` rows (schema 9) in the open file: a call's service, path, API
    versions and upstream, the same on every call of a method, stored once."""

    def __init__(self) -> None:
        super().__init__(_INSERT_ROUTE, _FIND_ROUTE)


@dataclass(slots=True)
class Keyframe:
    """A base of deltas: a body stored as it is (depth 0), or a link, a delta `depth` deltas
    from its keyframe (at: its call's start, for CHAIN_STEP_S)."""

    payload_id: int
    size: int
    data: bytes | None  # the body, until its compressor is built
    _compressor: bodies.Encoder | None = None
    depth: int = 0
    at: float = 0.0

    def compressor(self) -> bodies.Encoder:
        """Built for the first body that may be a delta of this one, not when the keyframe is
        stored: a method whose replies repeat exactly never needs it, and for a 1 MB body
        the dictionary's copy and tables cost about 3 MB. Until then the keyframe holds
        the body itself (the very bytes the memo of recent bodies holds too, if it does)."""
        if self._compressor is None:
            assert self.data is not None
            self._compressor, self.data = bodies.compressor(self.data), None
        return self._compressor


Delta = tuple[int, bytes, int]  # (base payload id, delta, depth: links from the keyframe)
_NO_LINK = Keyframe(0, 0, None, depth=MAX_CHAIN)  # staged: the chain ended, the next delta is the keyframe's


class Keyframes:
    """The last body stored as it is, per method (its path), and the method's last link."""

    def __init__(self, max_bytes: int = KEYFRAME_BYTES) -> None:
        self._max_bytes = max_bytes
        self._frames: OrderedDict[str, Keyframe] = OrderedDict()
        self._links: dict[str, Keyframe] = {}
        self._pending: dict[str, Keyframe] = {}
        self._pending_links: dict[str, Keyframe] = {}

    def delta(self, path: str, data: bytes) -> Delta | None:
        """(base id, delta, depth) when `data` resembles the method's last link or keyframe, else None."""
        frame = self._pending.get(path) or self._frames.get(path)
        if frame is None:
            return None
        link = self._pending_links.get(path) or self._links.get(path)
        for base in ((link, frame) if link is not None and link.depth < MAX_CHAIN else (frame,)):
            delta = base.compressor().compress(data)
            if len(delta) * DELTA_MAX_RATIO <= len(data):
                return base.payload_id, delta, base.depth + 1
        return None

    def link(self, path: str, payload_id: int, data: bytes, depth: int, at: float) -> None:
        """`data` was just inserted as a delta of `depth`, as row `payload_id`, for a call
        started at `at`: the method's next base, unless the base moved on less than
        CHAIN_STEP_S ago (and so still serves), or the chain is as long as it may be."""
        last = self._pending_links.get(path) or self._links.get(path)
        if depth >= MAX_CHAIN:
            self._pending_links[path] = _NO_LINK
        elif last is None or last is _NO_LINK or at - last.at >= CHAIN_STEP_S or at < last.at:
            self._pending_links[path] = Keyframe(payload_id, len(data), data, depth=depth, at=at)

    def stage(self, path: str, payload_id: int, data: bytes) -> None:
        """`data` was just inserted as it is, as row `payload_id`: the method's next keyframe
        (unless it alone is over the memory bound); its chain starts again."""
        self._pending_links[path] = _NO_LINK
        if len(data) > self._max_bytes:
            self._pending.pop(path, None)
            self._frames.pop(path, None)
            return
        self._pending[path] = Keyframe(payload_id, len(data), data)

    def committed(self) -> None:
        for path, frame in self._pending.items():
            self._frames[path] = frame
            self._frames.move_to_end(path)
        for path, link in self._pending_links.items():
            if link is _NO_LINK:
                self._links.pop(path, None)
            else:
                self._links[path] = link
        self._pending.clear()
        self._pending_links.clear()
        # A link is a body in memory too (and its compressor about three times it).
        while self._frames and sum(f.size for f in (*self._frames.values(), *self._links.values())) > self._max_bytes:
            path, _ = self._frames.popitem(last=False)
            self._links.pop(path, None)
        for path in [p for p in self._links if p not in self._frames]:
            del self._links[path]

    def ids(self) -> list[int]:
        return [frame.payload_id for frame in (*self._frames.values(), *self._links.values())]

    def keep(self, payload_ids: set[int]) -> None:
        """After pruning: forgets the keyframes and links whose rows are gone."""
        for path in [p for p, frame in self._frames.items() if frame.payload_id not in payload_ids]:
            del self._frames[path]
        for path in [p for p, link in self._links.items() if link.payload_id not in payload_ids or p not in self._frames]:
            del self._links[path]

    def clear(self) -> None:
        self._frames.clear()
        self._links.clear()
        self._pending.clear()
        self._pending_links.clear()
