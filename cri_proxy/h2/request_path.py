"""A request's `:path` read from the start of its HPACK header block, and nothing more.

Routing needs only the path of a connection's first request. HTTP/2 puts pseudo-header
fields before every regular field (RFC 9113 §8.3), and a request has four of them, so the
path is among the first few fields: this reads fields until it meets `:path`, a regular
field, or `MAX_FIELDS` fields, whichever comes first, and never decodes a string longer than
`MAX_STRING` bytes. Its work is bounded whatever the block's size, so a huge block (a
flood of one-byte references decodes to 33 times its size) costs the relay's only loop
nothing. It reads the first block of a connection, whose dynamic table starts empty
(RFC 7541 §2.3.2); a connection whose later blocks matter keeps a full decoder instead.
When the upstream's SETTINGS lowered the table's limit below its initial 4,096 bytes before
that block, the block must begin by shrinking the table (RFC 7541 §4.2), as for the decoder.
"""

from __future__ import annotations

from typing import Final

from cri_proxy.h2.hpack_decoder import (
    DEFAULT_TABLE_SIZE,
    ENTRY_OVERHEAD,
    STATIC,
    HPACKDecodingError,
    decode_huffman,
    read_integer as _integer,
    shrinks_to,
)

MAX_FIELDS: Final = 8  # four request pseudo-headers (§8.3.1), and room for a few an odd client adds
MAX_STRING: Final = 4096  # a CRI method path is under 100 bytes; a longer string is not worth decoding
_PATH: Final = b":path"

_Entry = tuple[bytes, bytes, int]  # name, value, size (RFC 7541 §4.1)


def first_request_path(block: bytes, table_size: int = DEFAULT_TABLE_SIZE, due: int | None = None) -> str | None:
    """The `:path` of the first request block of a connection, or None when it has none
    within its pseudo-headers (or within the bounds above).

    HPACKDecodingError when what it reads is not HPACK. `table_size` is the most the
    encoder may grow its table to (the upstream's SETTINGS_HEADER_TABLE_SIZE); `due`, when
    not None, the smallest limit acknowledged below 4,096 bytes before this block.
    """
    if due is not None and due < DEFAULT_TABLE_SIZE:
        shrinks_to(block, due)
    try:
        return _read(block, table_size)
    except IndexError:
        raise HPACKDecodingError("truncated header block or bad index") from None


def _read(block: bytes, allowed: int) -> str | None:
    dynamic: list[_Entry] = []  # newest first
    maxsize, pos, end, fields = DEFAULT_TABLE_SIZE, 0, len(block), 0
    while pos < end and fields < MAX_FIELDS:
        first = block[pos]
        if first & 0x80:  # indexed field (§6.1)
            index, pos = _integer(block, pos, 0x7F)
            name, value, _ = _entry(index, dynamic)
        elif first & 0xE0 == 0x20:  # dynamic table size update (§6.3)
            maxsize, pos = _integer(block, pos, 0x1F)
            if maxsize > allowed:
                raise HPACKDecodingError(f"table size {maxsize} above the allowed {allowed}")
            _evict(dynamic, maxsize)
            continue
        else:  # a literal (§6.2): with incremental indexing, without, or never indexed
            indexing = bool(first & 0x40)
            index, pos = _integer(block, pos, 0x3F if indexing else 0x0F)
            if index:
                name = _entry(index, dynamic)[0]
            else:
                raw_name, pos = _string(block, pos)
                if raw_name is None:
                    return None
                name = raw_name
            raw_value, pos = _string(block, pos)
            if raw_value is None:
                return None
            value = raw_value
            if indexing:
                dynamic.insert(0, (name, value, ENTRY_OVERHEAD + len(name) + len(value)))
                _evict(dynamic, maxsize)
        fields += 1
        if name == _PATH:
            return value.decode("latin-1")
        if not name.startswith(b":"):
            return None  # the pseudo-headers ended without a path
    return None


def _entry(index: int, dynamic: list[_Entry]) -> _Entry:
    if index <= 0:
        raise HPACKDecodingError("header index 0")
    if index <= len(STATIC):
        name, value = STATIC[index - 1]
        return name, value, 0
    if index - len(STATIC) > len(dynamic):
        raise HPACKDecodingError(f"header index {index} beyond the table")
    return dynamic[index - len(STATIC) - 1]


def _evict(dynamic: list[_Entry], maxsize: int) -> None:
    size = sum(entry[2] for entry in dynamic)
    while dynamic and size > maxsize:
        size -= dynamic.pop()[2]


def _string(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """A string literal (§5.2); None for one longer than MAX_STRING (not decoded)."""
    huffman = data[pos] & 0x80
    length, pos = _integer(data, pos, 0x7F)
    stop = pos + length
    if stop > len(data):
        raise HPACKDecodingError("truncated header block")
    if length > MAX_STRING:
        return None, stop
    raw = data[pos:stop]
    return (decode_huffman(raw) if huffman else raw), stop
