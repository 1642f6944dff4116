"""How a recorded call becomes a `calls` row (the columns of storage/migrations)."""

from __future__ import annotations

import functools
import json

from cri_proxy.model.call import Direction, Metadata, RecordedCall
from cri_proxy.store.db import utc_text
from cri_proxy.recorder.ids import ID_KEYS, Ids

STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip

CALL_COLUMNS = (
    "session_id", "conn_id", "stream_id", "started_at", "started_unix", "duration_ms",
    "service", "method", "path", "client_api", "upstream_api", "status_code", "status_name",
    "status_message", "outcome", "request_bytes", "response_bytes", "request_count",
    "response_count", "peer_pid", "peer_uid", "upstream", "request_metadata",
    "response_metadata", "trailers", "redacted", "notes", "format_version", *ID_KEYS,
)  # fmt: skip

INSERT_CALL = (
    f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in CALL_COLUMNS)})"
)


def status_name(code: int | None) -> str | None:
    if code is None:
        return None
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else f"CODE_{code}"


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


def call_row(
    call: RecordedCall, session_id: int, ids: Ids, redacted: bool
) -> tuple[object, ...]:
    requests = sum(1 for m in call.messages if m.direction is Direction.REQUEST)
    return (
        session_id,
        call.conn_id,
        call.stream_id,
        utc_text(call.started_at),
        call.started_at,
        None if call.duration_s is None else round(call.duration_s * 1000, 3),
        call.service,
        call.method,
        call.path,
        call.client_api,
        call.upstream_api,
        call.status_code,
        status_name(call.status_code),
        call.status_message,
        call.outcome.value,
        call.request_bytes,
        call.response_bytes,
        requests,
        len(call.messages) - requests,
        call.peer_pid,
        call.peer_uid,
        call.upstream or None,
        _metadata_json(call.request_metadata),
        _metadata_json(call.response_metadata),
        _metadata_json(call.trailers),
        int(redacted),
        json.dumps(call.notes) if call.notes else None,
        call.format_version,
        *(ids.get(name) for name in ID_KEYS),
    )
