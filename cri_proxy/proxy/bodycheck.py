"""The checks on a v1 request bound for a v1alpha2 runtime, read from the protobuf wire format.

The relay never loads protobuf, and needs only a few facts from the few request types that
can carry a v1-only field or a retyped one (cri_proxy.proxy.v1only, generated from the
descriptors): which v1-only fields are set, and which `KeyValue.value` (bytes in v1, string
in v1alpha2) is not UTF-8. Those are the bridge's findings (cri_proxy.bridge.checks), with
the same field paths ("config.mounts[0].recursive_read_only", "config.envs[2] ('NAME')"),
read here by a tiny reader of the wire format (varints, read by cri_proxy.model.protowire,
lengths, fixed widths): nothing is built but the findings. A malformed message raises `WireError`; the caller forwards it
unchecked, as the bridge does, since judging it is the runtime's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cri_proxy.model.cri import CallPath
from cri_proxy.model.protowire import WireError, read_varint
from cri_proxy.model.status import StatusCode
from cri_proxy.proxy.v1only import FIELDS, REQUESTS

_MAX_DEPTH = 64  # deeper than any CRI message; bounds the reader's recursion
MAX_CHECKED: Final = 64 << 20  # a request message larger than this is forwarded unchecked
IGNORED: Final = "v1-only fields ignored by the v1alpha2 runtime"  # how the note of such a request opens


@dataclass(slots=True)
class Findings:
    """What a request sets that a v1alpha2 runtime would ignore or reject (as bridge.checks)."""

    dropped: list[str] = field(default_factory=list)
    security: list[str] = field(default_factory=list)
    bad_utf8: list[str] = field(default_factory=list)


class Pending:
    """A checked request's first message, gathered as its DATA goes by (proxy.translate): for
    the v1-only check (`judge`), for a fault decision on its pod facts (`call`), or both."""

    __slots__ = ("path", "buffer", "judge", "call")

    def __init__(self, path: str, judge: bool = True, call: CallPath | None = None) -> None:
        self.path = path
        self.buffer = bytearray()
        self.judge = judge
        self.call = call


def data_content(flags: int, raw: bytes) -> bytes:
    """A DATA frame's payload (`raw` is the whole frame) without its padding (RFC 9113 §6.1)."""
    if not flags & 0x8:  # PADDED
        return raw[9:]
    pad = raw[9] if len(raw) > 9 else 0
    return raw[10:max(10, len(raw) - pad)]


def checked(path: str) -> bool:
    """Whether a v1 request of `path` is read before it goes to a v1alpha2 runtime."""
    return path in REQUESTS


def judge(path: str, buffer: bytes | bytearray, size: int, strict: bool) -> tuple[list[str], tuple[int, str] | None]:
    """The notes for a checked request whose first message (5-byte gRPC prefix, then `size`
    bytes) is `buffer`, and (code, details) when it is refused: the bridge's."""
    if size < 0 or len(buffer) < 5 + size or size > MAX_CHECKED:
        return ["request did not parse as v1, forwarded unchecked: its message is incomplete or too large"], None
    if buffer[0]:
        return ["request compressed, forwarded unchecked"], None
    try:
        found = inspect(path, bytes(buffer[5:5 + size]))
    except WireError as exc:
        return [f"request did not parse as v1, forwarded unchecked: {exc}"], None
    if found.bad_utf8:
        names = ", ".join(found.bad_utf8)
        return [f"refused: env values not valid UTF-8: {names}"], (
            StatusCode.INVALID_ARGUMENT,
            f"environment variable values must be valid UTF-8 for a CRI v1alpha2 runtime: {names}")
    if not found.dropped:
        return [], None
    if strict and found.security:
        names = ", ".join(found.security)
        return [f"refused (strict): v1-only fields set: {names}"], (
            StatusCode.FAILED_PRECONDITION,
            f"the runtime speaks CRI v1alpha2 and would ignore these security-relevant fields: {names}")
    return [f"{IGNORED}: {', '.join(found.dropped)}"], None


def inspect(path: str, message: bytes) -> Findings:
    """The findings for one request message (the gRPC payload, without its 5-byte prefix)."""
    found = Findings()
    name = REQUESTS.get(path)
    if name is not None:
        _walk(memoryview(message), name, "", found, 0)
    return found


def fields(data: memoryview) -> list[tuple[int, int, int | memoryview]]:
    """(number, wire type, value) for each field: an int, or the bytes of a length-delimited one."""
    out: list[tuple[int, int, int | memoryview]] = []
    pos, end = 0, len(data)
    while pos < end:
        key, pos = read_varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | memoryview
        if wire == 0:
            value, pos = read_varint(data, pos, end)
        elif wire == 2:
            length, pos = read_varint(data, pos, end)
            if pos + length > end:
                raise WireError("truncated length-delimited field")
            value, pos = data[pos:pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise WireError("truncated fixed-width field")
            value, pos = int.from_bytes(data[pos:pos + width], "little"), pos + width
        else:
            raise WireError(f"wire type {wire} (groups are not in CRI)")
        out.append((number, wire, value))
    return out


def _walk(data: memoryview, name: str, prefix: str, found: Findings, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise WireError("message nested too deeply")
    table = FIELDS.get(name)
    parsed = fields(data)
    if not table:
        return
    counts: dict[int, int] = {}
    # Findings in field-number order, as protobuf's ListFields gives them to bridge.checks.
    for number, wire, value in sorted(parsed, key=lambda item: item[0]):
        entry = table.get(number)
        index = counts.get(number, 0)
        counts[number] = index + 1
        if entry is None:
            continue
        field_name, kind, sub = entry
        path = f"{prefix}{field_name}"
        if kind in ("added", "security"):
            if path not in found.dropped and _set(wire, value, bool(sub)):
                found.dropped.append(path)
                if kind == "security":
                    found.security.append(path)
        elif kind == "utf8" and isinstance(value, memoryview):
            try:
                bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                found.bad_utf8.append(f"{prefix.rstrip('.')} ({_key(data)!r})")
        elif isinstance(value, memoryview):
            where = f"{path}[{index}]." if kind == "messages" else f"{path}."
            _walk(value, sub, where, found, depth + 1)


def _set(wire: int, value: int | memoryview, is_message: bool) -> bool:
    """Whether a field is set as protobuf counts it: a message even when empty, a proto3
    scalar only when it is not its zero value (a serializer writes no zero, but a client may)."""
    if is_message:
        return True
    return bool(len(value)) if isinstance(value, memoryview) else value != 0


def _key(data: memoryview) -> str:
    """A KeyValue's key (field 1), for the finding's text; the last one wins, as in protobuf."""
    key = ""
    for number, wire, value in fields(data):
        if number == 1 and isinstance(value, memoryview):
            key = bytes(value).decode("utf-8", "replace")
    return key
