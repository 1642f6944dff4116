"""A small HPACK decoder (RFC 7541) for the tap: the same results as `hpack.Decoder`, faster.

The tap decodes every header block of every call on the proxy's event loop. `hpack`'s
decoder logs each header and walks Huffman strings a nibble at a time, which costs tens of
microseconds per request; this one decodes integers and strings inline and Huffman a byte
at a time (h2.huffman, whose names are re-exported here), and turns each literal into text
once, when it is read: indexed fields, most of a warm connection's, come back from the table
as text.
`hpack` stays the reference: the tests compare both decoders on randomized header lists
from `hpack.Encoder`, with table evictions and size updates.

The decoder insists on RFC 7541 §4.2 where `hpack` only checks the table's size at the end
of a block: once `max_allowed_table_size` is lowered below the table's current size (the
peer acknowledged a smaller SETTINGS_HEADER_TABLE_SIZE), the next block must begin with
dynamic table size updates, one of them to at most the smallest limit set meanwhile; and
no update may exceed the limit. Either breach is a COMPRESSION_ERROR for HTTP/2.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final

from hpack.table import HeaderTable

from cri_proxy.h2.huffman import HPACKDecodingError, decode_huffman, warm

__all__ = ["DEFAULT_TABLE_SIZE", "ENTRY_OVERHEAD", "STATIC", "Decoder", "Field", "HPACKDecodingError", "TextHook",
           "decode_huffman", "plain_text", "read_integer", "shrinks_to", "warm"]

Field = tuple[str, str]

STATIC: Final[tuple[tuple[bytes, bytes], ...]] = tuple(HeaderTable.STATIC_TABLE)
DEFAULT_TABLE_SIZE: Final = 4096
ENTRY_OVERHEAD: Final = 32  # RFC 7541 §4.1


def plain_text(raw: bytes, name: str | None) -> str:
    """Header bytes as text: ASCII as is, anything else as UTF-8 with undecodable bytes escaped."""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


TextHook = Callable[[bytes, "str | None"], str]  # (raw bytes, the field's name or None for a name)
# A table entry: the field as text, its name's length in bytes, its size (§4.1).
_Entry = tuple[Field, int, int]


_STATIC_ENTRIES: dict[TextHook, tuple[_Entry, ...]] = {}


def _static_entries(text: TextHook) -> tuple[_Entry, ...]:
    entries = _STATIC_ENTRIES.get(text)
    if entries is None:
        entries = _STATIC_ENTRIES[text] = tuple(
            ((text(n, None), text(v, text(n, None))), len(n), ENTRY_OVERHEAD + len(n) + len(v)) for n, v in STATIC)
    return entries


class Decoder:
    """One direction's HPACK decoding state.

    `decode` returns (name, value) text pairs; `text` turns a literal's bytes into text,
    once, when it is read (indexed fields come back already converted from the table).
    """

    __slots__ = ("_dynamic", "_size", "_maxsize", "_text", "_static", "_allowed", "_due",
                 "max_header_list_size", "_gen", "_seen", "_seen_gen")

    def __init__(self, max_header_list_size: int = 16 << 20, text: TextHook = plain_text) -> None:
        self._dynamic: deque[_Entry] = deque()  # newest first: index 62 is _dynamic[0]
        self._size = 0
        self._maxsize = DEFAULT_TABLE_SIZE
        self._text = text
        self._static = _static_entries(text)
        self._allowed = DEFAULT_TABLE_SIZE
        self._due: int | None = None  # the size the next block must first shrink the table to (§4.2)
        self.max_header_list_size = max_header_list_size
        self._gen = 0  # counts changes to the dynamic table
        self._seen: dict[bytes, list[Field]] = {}  # blocks decoded without changing the table...
        self._seen_gen = 0  # ...while the table was as it is at this count
        warm()  # the Huffman table, built at the first Decoder unless warmed earlier

    @property
    def header_table_size(self) -> int:
        return self._maxsize

    @property
    def max_allowed_table_size(self) -> int:
        """The most the encoder may grow the table to: the peer's acknowledged SETTINGS_HEADER_TABLE_SIZE."""
        return self._allowed

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._allowed = value
        if value < self._maxsize:  # the encoder must shrink its table, first thing in its next block
            self._due = value if self._due is None else min(self._due, value)

    @property
    def must_resize(self) -> bool:
        """Whether the next block must open with a table size update (§4.2): until then, what a
        caller made of an earlier block does not stand for the same bytes decoded now."""
        return self._due is not None

    @property
    def generation(self) -> int:
        """Counts changes to the dynamic table: the same before and after a block that left it
        as it was (proxy.translate reuses what it made of such a block)."""
        return self._gen

    def decode(self, data: bytes) -> list[Field]:
        """The block's fields. The list may be shared with earlier results: do not modify it.

        A server answers every call with the same header block and the same trailers once
        their fields are in the table; such a block, decoded once without touching the table,
        decodes the same while the table stays as it was, so it is looked up instead.
        """
        if self._due is not None:
            shrinks_to(data, self._due)
            self._due = None
        if self._seen_gen != self._gen:
            self._seen.clear()
            self._seen_gen = self._gen
        else:
            known = self._seen.get(data)
            if known is not None:
                return known
        gen = self._gen
        try:
            headers = self._decode(data)
        except IndexError as exc:  # a read past the end of the block, or of the table
            raise HPACKDecodingError(f"truncated header block or bad index ({exc})") from None
        if self._gen == gen and len(data) <= 1024 and len(self._seen) < 64:
            self._seen[data] = headers
        return headers

    def _decode(self, data: bytes) -> list[Field]:
        headers: list[Field] = []
        pos, end, inflated = 0, len(data), 0
        static, dynamic, limit = self._static, self._dynamic, self.max_header_list_size
        while pos < end:
            first = data[pos]
            if first & 0x80:  # indexed field (§6.1); small indexes inline, they are most fields
                index = first & 0x7F
                if 0 < index <= 61:
                    entry = static[index - 1]
                    pos += 1
                elif 61 < index < 0x7F:
                    entry = dynamic[index - 62]  # IndexError past the table's end
                    pos += 1
                else:
                    index, pos = read_integer(data, pos, 0x7F)
                    entry = self._get(index)
            elif first & 0x40:  # literal with incremental indexing (§6.2.1)
                index = first & 0x3F
                if 0 < index < 0x3F:  # an indexed name (a grpc-go client's every new grpc-timeout), inline
                    (name, _), name_len, _ = static[index - 1] if index <= 61 else self._get(index)
                    raw, pos = _string(data, pos + 1)
                    entry = ((name, self._text(raw, name)), name_len, ENTRY_OVERHEAD + name_len + len(raw))
                else:
                    entry, pos = self._literal(data, pos, 0x3F)
                self._add(entry)
            elif first & 0x20:  # dynamic table size update (§6.3)
                if headers:
                    raise HPACKDecodingError("table size update after a header field")
                size, pos = read_integer(data, pos, 0x1F)
                if size > self._allowed:
                    raise HPACKDecodingError(f"table size update to {size} above the allowed {self._allowed}")
                self._maxsize = size
                self._gen += 1
                self._evict()
                continue
            else:  # literal without indexing or never indexed (§6.2.2, §6.2.3)
                entry, pos = self._literal(data, pos, 0x0F)
            headers.append(entry[0])
            inflated += entry[2]
            if inflated > limit:
                raise HPACKDecodingError(f"header list larger than {limit} bytes")
        return headers

    def _get(self, index: int) -> _Entry:
        if index <= 0:
            raise HPACKDecodingError("header index 0")
        if index <= 61:
            return self._static[index - 1]
        if index - 62 >= len(self._dynamic):
            raise HPACKDecodingError(f"header index {index} beyond the table")
        return self._dynamic[index - 62]

    def _literal(self, data: bytes, pos: int, mask: int) -> tuple[_Entry, int]:
        index, pos = read_integer(data, pos, mask)
        if index:
            (name, _), name_len, _ = self._get(index)
        else:
            raw_name, pos = _string(data, pos)
            name, name_len = self._text(raw_name, None), len(raw_name)
        raw, pos = _string(data, pos)
        return ((name, self._text(raw, name)), name_len, ENTRY_OVERHEAD + name_len + len(raw)), pos

    def _add(self, entry: _Entry) -> None:
        self._gen += 1
        if entry[2] > self._maxsize:  # §4.4: an entry larger than the table empties it
            self._dynamic.clear()
            self._size = 0
            return
        self._dynamic.appendleft(entry)
        self._size += entry[2]
        if self._size > self._maxsize:
            self._evict()

    def _evict(self) -> None:
        dynamic = self._dynamic
        while self._size > self._maxsize:
            self._size -= dynamic.pop()[2]


def shrinks_to(data: bytes, due: int) -> None:
    """HPACKDecodingError unless the block opens with dynamic table size updates, one of them
    to at most `due`: what RFC 7541 §4.2 asks of the first block after the limit fell to `due`."""
    pos, smallest = 0, None
    try:
        while pos < len(data) and data[pos] & 0xE0 == 0x20:
            size, pos = read_integer(data, pos, 0x1F)
            smallest = size if smallest is None else min(smallest, size)
    except IndexError:
        raise HPACKDecodingError("truncated table size update") from None
    if smallest is None:
        raise HPACKDecodingError(f"the header block does not begin with a dynamic table size update, due since "
                                 f"the table was limited to {due} bytes (RFC 7541 §4.2)")
    if smallest > due:
        raise HPACKDecodingError(f"the header block's table size updates (down to {smallest}) do not bring the "
                                 f"table within the {due} bytes it was limited to (RFC 7541 §4.2)")


def read_integer(data: bytes, pos: int, mask: int) -> tuple[int, int]:
    """An integer with an N-bit prefix (§5.1) at `pos`; returns it and the position after."""
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HPACKDecodingError("integer too large")


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    """A string literal (§5.2), Huffman-coded or not."""
    first = data[pos]
    length = first & 0x7F
    if length < 0x7F:
        pos += 1
    else:
        length, pos = read_integer(data, pos, 0x7F)
    stop = pos + length
    if stop > len(data):
        raise HPACKDecodingError("truncated header block")
    raw = data[pos:stop]
    return (decode_huffman(raw) if first & 0x80 else raw), stop
