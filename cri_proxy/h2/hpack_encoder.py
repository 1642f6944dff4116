"""A small HPACK encoder (RFC 7541) for the header blocks the relay rewrites towards a runtime.

Once the relay rewrites one request's headers (a new `:path`), the client's HPACK context
and the runtime's no longer match, so every later block of that connection is re-encoded
with this encoder. It is built for that one job and for speed on the relay's loop:
- fields come from the static table when they are there whole (`:method POST`), otherwise
  they are indexed in the dynamic table, except those whose values change on every call
  (`grpc-timeout`...) or must never be stored (`authorization`...): those are literals
  without indexing (never indexed for the sensitive ones), so a warm connection's repeated
  requests encode to a few one-byte references;
- no Huffman coding: a unix socket does not need the bytes saved, and the runtime decodes a
  plain literal faster;
- each field's encoding is remembered while the dynamic table is unchanged, and a block
  made only of remembered fields is their concatenation.
`set_max_size` honours the runtime's SETTINGS_HEADER_TABLE_SIZE: the table never grows
beyond the smaller of that and 4096 bytes, and a size change is announced at the start of
the next block (§4.2, §6.3). `hpack.Decoder` is the reference the tests check against.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from cri_proxy.h2.hpack_decoder import DEFAULT_TABLE_SIZE, ENTRY_OVERHEAD, STATIC

Field = tuple[str, str]  # latin-1 text: one character a byte, so any field value survives

# Values that differ from call to call: storing them would only churn the table.
NOT_INDEXED: Final = frozenset({"grpc-timeout", "content-length", ":path-translated", "grpc-trace-bin",
                                "traceparent", "tracestate"})
# Values no table may keep (RFC 7541 §7.1.3), as hpack and grpc-go treat them.
NEVER_INDEXED: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
MAX_INDEXED_VALUE: Final = 512  # a longer value is sent literally: it would evict the rest

_STATIC_FIELDS: Final[dict[Field, int]] = {}
_STATIC_NAMES: Final[dict[str, int]] = {}
for _i, (_n, _v) in enumerate(STATIC, 1):
    _STATIC_FIELDS.setdefault((_n.decode("latin-1"), _v.decode("latin-1")), _i)
    _STATIC_NAMES.setdefault(_n.decode("latin-1"), _i)


# The literal-without-indexing prefix of the changing fields whose names are not in the
# static table: a constant, whatever the dynamic table holds.
_LITERAL_HEADS: Final = {name: b"\x00" + bytes([len(name)]) + name.encode() for name in NOT_INDEXED
                         if name not in _STATIC_NAMES}


def latin1(raw: bytes, name: str | None) -> str:
    """The decoder's text hook for blocks this encoder re-encodes: lossless for any byte."""
    return raw.decode("latin-1")


def integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An integer with an N-bit prefix (§5.1); `first` holds the representation's flag bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(raw: bytes) -> bytes:
    """A string literal without Huffman coding (§5.2)."""
    return integer(len(raw), 7, 0) + raw


def literal(name: str, value: str, never: bool = True) -> bytes:
    """A field as a literal that no table keeps (§6.2.2, §6.2.3): for answers the proxy writes
    itself, which must leave the receiver's dynamic table as it was."""
    flag = 0x10 if never else 0x00
    index = _STATIC_NAMES.get(name, 0)
    head = integer(index, 4, flag) if index else bytes([flag]) + string(name.encode("latin-1"))
    return head + string(value.encode("latin-1"))


class Encoder:
    """One connection's encoding state towards the runtime."""

    __slots__ = ("_entries", "_fields", "_names", "_size", "_max", "_inserted", "_pending", "_cache")

    def __init__(self) -> None:
        self._entries: deque[tuple[Field, int]] = deque()  # newest first, with each entry's size
        self._fields: dict[Field, int] = {}  # field -> the insertion number of its newest entry
        self._names: dict[str, int] = {}  # name -> the same, for literals with an indexed name
        self._size = 0
        self._max = DEFAULT_TABLE_SIZE  # the size the decoder was last told
        self._inserted = 0  # entries ever added: the newest is index 62
        self._pending: list[int] = []  # size updates to announce at the start of the next block
        self._cache: dict[Field, bytes] = {}  # field -> its encoding while the table is as it is

    @property
    def table_size(self) -> int:
        return self._size

    @property
    def generation(self) -> tuple[int, int, int]:
        """Changes whenever the next block could encode differently (entries added, a new size,
        a size change to announce): while it is the same, so is the encoding of a list."""
        return self._inserted, self._max, len(self._pending)

    def set_max_size(self, allowed: int) -> None:
        """The runtime's SETTINGS_HEADER_TABLE_SIZE: use min(it, 4096); announce a change."""
        target = min(allowed, DEFAULT_TABLE_SIZE)
        if target == self._max and not self._pending:
            return
        self._pending.append(target)  # announced as the smallest, then the final one (§4.2)

    def empty_peer(self) -> None:
        """Make the next block begin by emptying the decoder's table (a size update to 0, then
        back to the current size), for a decoder whose table this encoder never filled: one that
        followed another encoder until now. This encoder's own table must be empty too."""
        if self._inserted:
            raise RuntimeError("empty_peer() is for an encoder that has not encoded yet")
        target = self._pending[-1] if self._pending else self._max
        self._pending += [0, target]

    def encode(self, headers: list[Field]) -> bytes:
        out: list[bytes] = []
        if self._pending:
            self._announce(out)
        cache = self._cache
        for field in headers:
            found = cache.get(field)
            if found is None:
                found = self._field(field)
            out.append(found)
        return b"".join(out)

    def _announce(self, out: list[bytes]) -> None:
        pending, self._pending = self._pending, []
        smallest = min(pending)
        sizes = [smallest] if smallest == pending[-1] else [smallest, pending[-1]]
        for size in sizes:
            out.append(integer(size, 5, 0x20))
            self._max = size
            self._evict()
        self._cache.clear()

    def _field(self, field: Field) -> bytes:
        name, value = field
        static = _STATIC_FIELDS.get(field)
        if static is not None:
            return self._remember(field, integer(static, 7, 0x80))
        inserted = self._fields.get(field)
        if inserted is not None:
            return self._remember(field, integer(self._index(inserted), 7, 0x80))
        head = _LITERAL_HEADS.get(name)
        if head is not None:  # a value that changes every call, under a name no table holds
            raw = value.encode("latin-1")
            return head + (bytes([len(raw)]) if len(raw) < 0x7F else integer(len(raw), 7, 0)) + raw
        name_index = _STATIC_NAMES.get(name, 0)
        if not name_index and name in self._names:
            name_index = self._index(self._names[name])
        if name in NEVER_INDEXED or name in NOT_INDEXED or len(value) > MAX_INDEXED_VALUE:
            flag, bits = (0x10 if name in NEVER_INDEXED else 0x00), 4
            return self._literal(flag, bits, name_index, name, value)
        # With incremental indexing: the table changes, so nothing remembered holds any longer.
        encoded = self._literal(0x40, 6, name_index, name, value)
        self._add(field)
        return encoded

    def _literal(self, flag: int, bits: int, name_index: int, name: str, value: str) -> bytes:
        raw_value = value.encode("latin-1")
        if name_index:
            return integer(name_index, bits, flag) + string(raw_value)
        return bytes([flag]) + string(name.encode("latin-1")) + string(raw_value)

    def _remember(self, field: Field, encoded: bytes) -> bytes:
        if len(self._cache) < 256:
            self._cache[field] = encoded
        return encoded

    def _index(self, inserted: int) -> int:
        return 62 + self._inserted - inserted

    def _add(self, field: Field) -> None:
        name, value = field
        size = ENTRY_OVERHEAD + len(name) + len(value)  # latin-1: one byte a character
        self._cache.clear()
        if size > self._max:  # §4.4: an entry larger than the table empties it
            self._entries.clear()
            self._fields.clear()
            self._names.clear()
            self._size = 0
            return
        self._inserted += 1
        self._entries.appendleft((field, size))
        self._fields[field] = self._inserted
        self._names[name] = self._inserted
        self._size += size
        self._evict()

    def _evict(self) -> None:
        entries = self._entries
        while self._size > self._max:
            (name, value), size = entries.pop()
            self._size -= size
            oldest = self._inserted - len(entries)  # the insertion number of the entry just dropped
            if self._fields.get((name, value)) == oldest:
                del self._fields[(name, value)]
            if self._names.get(name) == oldest:
                del self._names[name]
        if self._cache:
            self._cache.clear()
