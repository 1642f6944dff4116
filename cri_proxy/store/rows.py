"""Rows <-> recorded calls: how a `RecordedCall` becomes a `calls` row and its `messages`, and
how a stored row reads back as one (`StoredCall`: the call plus what only the row knows).

The mapping is lossless for what a row holds: metadata, trailers, notes, status, outcome,
times, the format version and every message's bytes, offset and compressed flag. Durations
and offsets are stored as milliseconds rounded to the microsecond, so they read back to that
precision. A body over the payload cap is stored without its bytes: such a message reads
back empty and its call has `complete=False` (as has a call with a compressed message,
which a replay cannot send as recorded).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cri_proxy.model.call import Direction, Message, Metadata, Outcome, RecordedCall
from cri_proxy.model.status import status_name
from cri_proxy.store import bodies
from cri_proxy.store.chains import Chains, Memo
from cri_proxy.store.db import utc_text

# The id columns of `calls` (what recorder.ids.call_ids finds; tests check the two agree).
ID_COLUMNS = ("pod_sandbox_id", "container_id", "image", "pod_name", "pod_namespace")
Ids = dict[str, "str | None"]

CALL_COLUMNS = (
    "session_id", "conn_id", "stream_id", "started_at", "started_unix", "duration_ms",
    "service", "method", "path", "client_api", "upstream_api", "status_code", "status_name",
    "status_message", "outcome", "request_bytes", "response_bytes", "request_count",
    "response_count", "peer_pid", "peer_uid", "upstream", "request_metadata",
    "response_metadata", "trailers", "redacted", "notes", "format_version", *ID_COLUMNS,
    "exit_code", "client_id",
)  # fmt: skip

METADATA_COLUMNS = ("request_metadata", "response_metadata", "trailers")
# A call's route (schema 9): what every call of a method repeats, stored once in `routes`.
ROUTE_COLUMNS = ("service", "path", "client_api", "upstream_api", "upstream")
# A call's shape (schema 12): every column of `calls` that repeats from one call of a method
# and object to the next, stored once per distinct combination in `call_shapes` (bound in
# this order; the shape's inline metadata text, there for rows written through the view,
# is left NULL: the writer's sets are in `metadata_sets`). `request_payload` and
# `response_payload` name the one request's and one response's bodies (payload id * 2 +
# compressed); `call_id` is set only on the shape of a call with more messages than that.
SHAPE_COLUMNS = (
    "method", "route_id", "status_code", "status_name", "status_message", "outcome", "request_bytes",
    "response_bytes", "request_count", "response_count", "peer_pid", "peer_uid", "request_metadata_id",
    "response_metadata_id", "trailers_id", "redacted", "notes", "format_version", *ID_COLUMNS, "exit_code",
    "client_id", "request_payload", "response_payload", "call_id",
)  # fmt: skip
# What the writer inserts into `call_rows` per call (schema 12): the id first, the times, the
# shape and the two messages' offsets (for a shape shared by calls), the grpc-timeout value
# blanked in the request's metadata set: as a number (`timeout_code`, schema 14), or as text
# when the number would not spell it back the same. Its `started_at` is left NULL: the view
# derives it.
ROW_COLUMNS = ("id", "session_id", "conn_id", "stream_id", "started_unix", "duration_us", "shape_id",
               "request_offset_us", "response_offset_us", "grpc_timeout", "timeout_code")
INSERT_CALL = f"INSERT INTO call_rows ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"

# What a call's client row adds (0008_clients): the rest of the peer, beside peer_pid/peer_uid.
CLIENT_COLUMNS = ("gid", "name", "exe")

# What the read side selects: the row id first, then every column (`c.` so joins may use it),
# then the client's (a primary-key lookup each, NULL without a client).
SELECT_COLUMNS = "c.id, " + ", ".join(
    [f"c.{name}" for name in CALL_COLUMNS]
    + [f"(SELECT {name} FROM clients WHERE id = c.client_id)" for name in CLIENT_COLUMNS])
_AT = {name: i + 1 for i, name in enumerate((*CALL_COLUMNS, *(f"client_{n}" for n in CLIENT_COLUMNS)))}

# A call's messages with their bodies, in order; `{marks}` is the list of call ids. A body
# stored as a delta (schema 6) comes with its base's id, whose row store/chains.py reads.
SELECT_MESSAGES = (
    "SELECT m.call_id, m.direction, m.idx, m.offset_ms, p.data, m.compressed, p.truncated, p.delta, p.base_id, p.id "
    "FROM messages m JOIN payloads p ON p.id = m.payload_id "
    "WHERE m.call_id IN ({marks}) ORDER BY m.call_id, m.direction, m.idx"
)  # "request" sorts before "response"


@dataclass(slots=True)
class StoredCall:
    """A recorded call read back from a recording, with what only its row knows."""

    id: int  # calls.id
    session_id: int
    call: RecordedCall
    ids: Ids = field(default_factory=dict)  # the ID_COLUMNS, each a string or None
    redacted: bool = False  # secrets were blanked before it was stored
    complete: bool = True  # every message's bytes were stored, uncompressed (what replay can send)
    exit_code: int | None = None  # ExecSync's exit code (None: not ExecSync, or no decoded answer)

    @property
    def path(self) -> str:
        return self.call.path

    @property
    def method(self) -> str:
        return self.call.method

    @property
    def service(self) -> str:
        return self.call.service

    @property
    def started_unix(self) -> float:
        return self.call.started_at

    @property
    def started_at(self) -> str:
        """UTC text as the `started_at` column holds it."""
        return utc_text(self.call.started_at)

    @property
    def duration_ms(self) -> float | None:
        return None if self.call.duration_s is None else round(self.call.duration_s * 1000, 3)

    @property
    def status_code(self) -> int | None:
        return self.call.status_code

    @property
    def status_name(self) -> str | None:
        return status_name(self.call.status_code)

    @property
    def status_message(self) -> str | None:
        return self.call.status_message

    @property
    def outcome(self) -> str:
        return self.call.outcome.value

    @property
    def failed(self) -> bool:
        return self.call.failed

    @property
    def exited_nonzero(self) -> bool:
        """An ExecSync whose command exited non-zero: a failing probe, though the call was OK."""
        return self.exit_code is not None and self.exit_code != 0

    @property
    def is_cri(self) -> bool:
        return self.call.client_api is not None

    def bodies(self, direction: Direction) -> list[bytes]:
        return [m.data for m in self.call.messages if m.direction is direction]

    @property
    def requests(self) -> list[bytes]:
        return self.bodies(Direction.REQUEST)

    @property
    def responses(self) -> list[bytes]:
        return self.bodies(Direction.RESPONSE)

    @property
    def response_offsets_s(self) -> list[float]:
        return [m.offset_s for m in self.call.messages if m.direction is Direction.RESPONSE]


def _metadata_json(metadata: Metadata) -> str | None:
    if not metadata:
        return None
    try:
        return _pairs_json(tuple(metadata))
    except TypeError:  # an unhashable pair: not worth caching
        return json.dumps([list(pair) for pair in metadata])


@functools.lru_cache(maxsize=1024)  # the kubelet sends the same headers on every call
def _pairs_json(pairs: tuple[tuple[str, str], ...]) -> str:
    return json.dumps([list(pair) for pair in pairs])


# On the writer's path for every call: an Enum's `.value` is a descriptor call (about 1,000
# instructions), a dict of the members is one lookup.
_OUTCOME_TEXT = {outcome: outcome.value for outcome in Outcome}
_REQUEST = Direction.REQUEST


def route(call: RecordedCall) -> tuple[str, str, str | None, str | None, str | None]:
    """The call's ROUTE_COLUMNS, as `calls` shows them."""
    return call.service, call.path, call.client_api, call.upstream_api, call.upstream or None


def shape_values(call: RecordedCall, ids: Ids, redacted: bool, exit_code: int | None,
                 sets: tuple[int | None, int | None, int | None], client_id: int | None, route_id: int,
                 payloads: tuple[int | None, int | None], own_call: int | None,
                 method: str | None = None) -> tuple[object, ...]:
    """The call's SHAPE_COLUMNS: `sets` are the ids of its request metadata, response metadata
    and trailers sets (packing.MetadataSets), `route_id` its `routes` row, `payloads` its
    request's and response's (payload id * 2 + compressed, None without), `own_call` its id
    when the shape is its own (more messages than one each way), else None. `method` is
    `call.method` where the caller knows it already (reading it parses the path)."""
    messages = call.messages
    requests = [m.direction for m in messages].count(_REQUEST)  # no generator frame per message
    code = call.status_code
    return (
        call.method if method is None else method, route_id, code, status_name(code), call.status_message,
        _OUTCOME_TEXT[call.outcome],
        call.request_bytes, call.response_bytes, requests, len(messages) - requests, call.peer_pid, call.peer_uid,
        *sets, int(redacted), json.dumps(call.notes) if call.notes else None, call.format_version,
        ids.get("pod_sandbox_id"), ids.get("container_id"), ids.get("image"), ids.get("pod_name"),
        ids.get("pod_namespace"),  # ID_COLUMNS
        exit_code, client_id, *payloads, own_call,
    )  # fmt: skip


def metadata_text(metadata: Metadata) -> str | None:
    """A metadata list as its column holds it: JSON pairs, NULL for none. The canonical text
    a metadata set is stored (and hashed) as."""
    return _metadata_json(metadata)


def _metadata(text: str | None) -> Metadata:
    return [(str(k), str(v)) for k, v in json.loads(text)] if text else []


def _outcome(value: str) -> Outcome:
    try:
        return Outcome(value)
    except ValueError:  # written by a newer cri-proxy: the tap could not say more either
        return Outcome.UNPARSED


def stored_call(row: Sequence[Any]) -> StoredCall:
    """A row selected with SELECT_COLUMNS as a StoredCall (messages are attached later)."""
    def col(name: str) -> Any:
        return row[_AT[name]]

    duration_ms = col("duration_ms")
    call = RecordedCall(
        conn_id=int(col("conn_id")), stream_id=int(col("stream_id")), started_at=float(col("started_unix")),
        path=str(col("path")), duration_s=None if duration_ms is None else float(duration_ms) / 1000,
        upstream=col("upstream") or "", peer_pid=col("peer_pid"), peer_uid=col("peer_uid"),
        client_api=col("client_api"), upstream_api=col("upstream_api"),
        request_metadata=_metadata(col("request_metadata")), response_metadata=_metadata(col("response_metadata")),
        trailers=_metadata(col("trailers")), status_code=col("status_code"), status_message=col("status_message"),
        outcome=_outcome(str(col("outcome"))), request_bytes=int(col("request_bytes")),
        response_bytes=int(col("response_bytes")), notes=list(json.loads(col("notes"))) if col("notes") else [],
        format_version=int(col("format_version")), peer_gid=col("client_gid"), peer_name=col("client_name"),
        peer_exe=col("client_exe"),
    )  # fmt: skip
    ids = {name: col(name) for name in ID_COLUMNS}
    exit_code = col("exit_code")
    return StoredCall(int(row[0]), int(col("session_id")), call, ids, bool(col("redacted")),
                      exit_code=None if exit_code is None else int(exit_code))


def message_bytes(row: Sequence[Any]) -> int:
    """The size of a row's message bodies (to bound a batch of calls read together)."""
    return int(row[_AT["request_bytes"]] or 0) + int(row[_AT["response_bytes"]] or 0)


def chains(rows: Iterable[Sequence[Any]], memo: Memo) -> Chains:
    """The deltas among rows of SELECT_MESSAGES, for store/chains.py to read their bases."""
    return Chains(memo, ((row[9], (row[4], row[7], row[8])) for row in rows if row[4] is None and row[7] is not None))


def attach_messages(by_id: dict[int, StoredCall], rows: Iterable[Sequence[Any]], deltas: Chains | None = None) -> None:
    """Adds the rows of SELECT_MESSAGES to their calls, in order; `deltas` (`chains` of the
    same rows, each of its queries run) rebuilds the bodies stored as deltas."""
    for call_id, direction, idx, offset_ms, data, compressed, truncated, delta, base_id, payload_id in rows:
        stored = by_id[call_id]
        if data is None and delta is not None and base_id is not None and deltas is not None:
            data = deltas.body(payload_id)  # None: a row it needs is gone; the body reads as not stored
        if data is None or truncated or compressed:
            stored.complete = False
        stored.call.messages.append(Message(Direction(direction), int(idx), float(offset_ms) / 1000.0,
                                            bytes(data or b""), bool(compressed)))  # fmt: skip
