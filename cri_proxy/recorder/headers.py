"""gRPC header lists, as the tap reads them: text, metadata and status.

`header_text` turns a header's bytes into the text metadata holds, `split_headers` a decoded
header list into pseudo-headers and metadata, `cap_metadata` cuts a list to what one call
stores, and `read_status` / `set_status` read grpc-status and grpc-message off trailers.
(Split from wire.py, which keeps the message framing.)
"""

from __future__ import annotations

from base64 import b64encode
from typing import Final
from urllib.parse import unquote

from cri_proxy.model.call import Metadata, RecordedCall

__all__ = ["MAX_METADATA_BYTES", "MAX_METADATA_ENTRIES", "Status", "cap_metadata", "header_text", "read_status",
           "set_status", "split_headers"]


def header_text(raw: bytes, name: str | None) -> str:
    """A header name (`name` None) or value as text: what metadata holds.

    gRPC metadata is ASCII; anything else is kept readable. gRPC's C core sends `-bin`
    values as raw bytes after a 0 byte when both ends advertise "true binary metadata"
    (SETTINGS 0xFE03); those become base64, unpadded as gRPC writes it, so a value reads
    the same whichever way it travelled.
    """
    if raw[:1] == b"\x00" and name is not None and name.endswith("-bin"):
        return b64encode(raw[1:]).decode().rstrip("=")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def split_headers(headers: list[tuple[str, str]]) -> tuple[dict[str, str], Metadata, int]:
    """Pseudo-headers by name, and the rest: metadata (`-bin` values as base64 text), and
    the metadata's size (names and values)."""
    pseudo: dict[str, str] = {}
    metadata: Metadata = []
    size = 0
    for field in headers:
        if field[0][:1] == ":":
            pseudo[field[0]] = field[1]
        else:
            metadata.append(field)
            size += len(field[0]) + len(field[1])
    return pseudo, metadata, size


# What one call stores of each header list (request metadata, response metadata, trailers).
# gRPC's own limits are far lower (8-16 KiB by default in C core); a runtime taking up to 16 MiB
# (grpc-go) would let a few kilobytes of HPACK references inflate to megabytes per call.
MAX_METADATA_ENTRIES: Final = 256
MAX_METADATA_BYTES: Final = 64 << 10  # name + value + 32 per field, as HPACK counts a header list


def cap_metadata(metadata: Metadata, what: str, size: int) -> tuple[Metadata, str | None]:
    """The fields kept (the first ones, within both limits) and a note when some were cut.
    `size` is the list's (split_headers'), without the 32 per field."""
    if len(metadata) <= MAX_METADATA_ENTRIES and size + 32 * len(metadata) <= MAX_METADATA_BYTES:
        return metadata, None  # nearly every call
    kept, size = 0, 0
    for name, value in metadata:
        field_size = len(name) + len(value) + 32
        if kept == MAX_METADATA_ENTRIES or size + field_size > MAX_METADATA_BYTES:
            break
        kept, size = kept + 1, size + field_size
    if kept == len(metadata):
        return metadata, None
    total = sum(len(n) + len(v) + 32 for n, v in metadata)
    return metadata[:kept], (f"{what} cut to its first {kept} of {len(metadata)} fields "
                             f"({size:,} of {total:,} bytes)")


# What a trailer list says of a call's status (read_status): grpc-status found, its value,
# grpc-message found, its text, and the notes of unreadable grpc-status values.
Status = tuple[bool, int | None, bool, str | None, tuple[str, ...]]


def read_status(trailers: Metadata) -> Status:
    """grpc-status and grpc-message (percent-decoded) of a trailer list: the last of each
    counts; an unreadable grpc-status is a note."""
    code: int | None = None
    message: str | None = None
    has_code = has_message = False
    notes: list[str] = []
    for name, value in trailers:
        if name == "grpc-status":
            try:
                code, has_code = int(value), True
            except ValueError:
                notes.append(f"unreadable grpc-status {value!r}")
        elif name == "grpc-message":
            message, has_message = unquote(value, errors="replace") if "%" in value else value, True
    return has_code, code, has_message, message, tuple(notes)


def set_status(call: RecordedCall, status: Status) -> None:
    """What `read_status` read, applied to the call."""
    has_code, code, has_message, message, notes = status
    if has_code:
        call.status_code = code
    if has_message:
        call.status_message = message
    if notes:
        call.notes.extend(notes)
