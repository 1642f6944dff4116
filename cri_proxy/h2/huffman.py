"""HPACK's Huffman code (RFC 7541 §5.2, Appendix B) decoded a byte at a time, for h2.hpack_decoder.

`hpack` walks Huffman strings a nibble at a time; this module builds, once, a byte-wide
state table from `hpack`'s own nibble table (so the code table itself is the well-kept one)
and decodes with one lookup per input byte. Apart from the decoder because the table is a
thing of its own: built lazily (or at start, `warm`), shared by every decoder in a process.
"""

from __future__ import annotations

from typing import Final

from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE


class HPACKDecodingError(Exception):
    """The header block is not valid HPACK for the decoder's state; the state is now lost."""


# Byte-wide Huffman table: entry [state | byte] is (next state, bytes emitted), states kept
# shifted left by 8 so the loop does one OR. An invalid input leads to DEAD, which it never
# leaves. A string may end only in an accepting state (RFC 7541 §5.2: at most 7 bits of
# padding, all ones, no EOS); that is a property of the state (its path from the root).
_Transition = tuple[int, bytes]
_DEAD: Final = 256 << 8
_BYTE_TABLE: list[_Transition] = []
_ACCEPTING: list[bool] = []


def _build_byte_table() -> tuple[list[_Transition], list[bool]]:
    singles = [bytes([i]) for i in range(256)]
    accepting: dict[int, bool] = {0: True}
    dead: _Transition = (256, b"")
    steps: list[list[_Transition]] = []  # state -> its 16 (next state, bytes emitted) of one nibble
    for state in range(256):
        row = []
        for nibble in range(16):
            nxt, flags, symbol = HUFFMAN_TABLE[state * 16 + nibble]
            if flags & HUFFMAN_FAIL:
                row.append(dead)
                continue
            complete = bool(flags & HUFFMAN_COMPLETE)
            if accepting.setdefault(nxt, complete) != complete:
                raise RuntimeError(f"Huffman state {nxt} is both accepting and not")
            row.append((nxt, singles[symbol] if flags & HUFFMAN_EMIT_SYMBOL else b""))
        steps.append(row)
    steps.append([dead] * 16)
    # 65,792 transitions: one int per state and one bytes object per distinct output, shared
    # (measured: 7.9 MB of RSS built naively, 5.2 MB so; every process decoding HPACK holds it).
    shifted = [state << 8 for state in range(257)]
    outputs: dict[bytes, bytes] = {b"": b""}
    dead_row: list[_Transition] = [(_DEAD, b"")] * 16
    table: list[_Transition] = []
    for state in range(257):  # a byte is two nibbles: each row of 16 is one first nibble's
        for first, out in steps[state]:
            if first == 256:
                table += dead_row
                continue
            for s, more in steps[first]:
                joined = out + more if s != 256 else b""
                table.append((shifted[s], outputs.setdefault(joined, joined)))
    return table, [accepting.get(s, False) for s in range(257)]


def decode_huffman(data: bytes) -> bytes:
    table = _BYTE_TABLE or _load()
    state, out = 0, []
    for byte in data:
        state, emit = table[state | byte]
        out.append(emit)
    if not _ACCEPTING[state >> 8]:
        raise HPACKDecodingError("invalid or incomplete Huffman string")
    return b"".join(out)


def _load() -> list[_Transition]:
    if not _BYTE_TABLE:
        table, accepting = _build_byte_table()  # 50-100 ms, once, at the first Decoder (or warm())
        _ACCEPTING.extend(accepting)
        _BYTE_TABLE.extend(table)
    return _BYTE_TABLE


def warm() -> None:
    """Build the Huffman table now, at a process's start, rather than in its first call's time."""
    _load()

