"""gRPC status codes by name, and the one rule for "this call failed".

Every stage that names a status or judges a call uses these: the recorder (sampling never
drops a failure), the store (the `status_name` column), the SQL views (`FAILED_SQL` is the
same rule over a `calls` row; tests check the two agree on every combination), the read
side (tail, stats, replay).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class StatusCode(IntEnum):
    """The gRPC status codes (grpc/doc/statuscodes.md), with their canonical names."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


_NAMES: Final = {code.value: code.name for code in StatusCode}
_BY_NAME: Final = {code.name: code.value for code in StatusCode}

# How a call cut short by its own client ends: not the runtime's failure to answer.
STOPPED_BY_CLIENT: Final = frozenset({"DEADLINE_EXCEEDED", "CANCELLED"})

# The failure rule over a `calls` row, for the SQL views (storage/views.sql spells it out;
# tests/model/test_status.py checks that text and `failed` agree).
FAILED_SQL: Final = "(status_code IS NOT 0 OR outcome <> 'completed')"


def status_name(code: int | None) -> str | None:
    """"NOT_FOUND" for 5; `CODE_n` for a code gRPC does not define; None for no status."""
    if code is None:
        return None
    return _NAMES.get(code, f"CODE_{code}")


def status_code(name: str) -> int:
    """The code of a status name ("NOT_FOUND" or "not_found"), or a decimal code; ValueError otherwise."""
    key = name.strip().upper()
    if key in _BY_NAME:
        return _BY_NAME[key]
    if key.isdigit():
        return int(key)
    raise ValueError(f"{name!r} is not a gRPC status (one of {', '.join(_BY_NAME)}, or a number)")


def failed(outcome: str, status_code: int | None) -> bool:
    """The one failure rule: a call failed unless it completed with grpc-status 0.

    A call that completed without any grpc-status is a failure too: gRPC clients report
    such a response as an error (INTERNAL or UNKNOWN), so the kubelet saw one.
    `outcome` is the `Outcome` value ("completed", "cancelled", ...).
    """
    return outcome != "completed" or status_code != 0
