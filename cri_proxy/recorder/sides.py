"""One direction of a tapped connection: its HPACK state, the header block being read, and
the table size the peer allows. Everything here is bounded, whatever the peer sends.

- A header block (HEADERS + CONTINUATION) is gathered as bytes up to `MAX_HEADER_BLOCK`,
  the largest header list a runtime takes (grpc-go: 16 MiB). Past it the bytes are dropped
  as they come (a CONTINUATION flood): the block cannot be decoded, so the direction's HPACK
  state is lost and the connection's calls are recorded as unparsed, as the runtime, which
  refuses such a block, leaves them failed.
- SETTINGS_HEADER_TABLE_SIZE: the decoder allows the largest size the peer allowed,
  acknowledged or still in flight, followed by the relay's own `h2.table_size.TableSizeLimit`
  (bounded runs: a peer sending SETTINGS by the hundred thousand costs constant memory and
  time per frame).
"""

from __future__ import annotations

from typing import Protocol

from cri_proxy.h2 import frames as h2
from cri_proxy.h2.table_size import TableSizeLimit
from cri_proxy.model.call import Metadata
from cri_proxy.model.cri import parse_path
from cri_proxy.recorder.headers import Status, cap_metadata, header_text, read_status, split_headers

Split = tuple[dict[str, str], Metadata, int]

MAX_HEADER_LIST = 16 << 20
MAX_HEADER_BLOCK = MAX_HEADER_LIST
MAX_SPLITS = 16
_PADDED_OR_PRIORITY = h2.FLAG_PADDED | h2.FLAG_PRIORITY


class HeaderFacts:
    """What the tap takes from one decoded header list, worked out once (`Side.facts`) and
    shared by every call the list stands for: never modified."""

    __slots__ = ("split", "pseudo", "metadata", "size", "whole", "path", "api", "status", "http_note")

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.split: Split = split_headers(headers)
        self.pseudo, self.metadata, self.size = self.split
        self.whole = cap_metadata(self.metadata, "", self.size)[1] is None  # within the caps: kept as it is
        self.path = self.pseudo.get(":path", "")
        self.api = parse_path(self.path).api
        self.status: Status = read_status(self.metadata)  # what trailers of these fields say
        status = self.pseudo.get(":status")
        self.http_note = f"HTTP status {status}" if status is not None and status != "200" else None


class HeaderDecoder(Protocol):
    max_allowed_table_size: int

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        """One complete header block, as text (`headers.header_text`); raises on anything invalid."""


class ReferenceDecoder:
    """`hpack.Decoder` (the python-hyper reference), for comparison and benchmarks."""

    def __init__(self) -> None:
        from hpack import Decoder

        self._decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)

    @property
    def max_allowed_table_size(self) -> int:
        return int(self._decoder.max_allowed_table_size)

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._decoder.max_allowed_table_size = value

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        fields = []
        for raw_name, raw_value in self._decoder.decode(data, raw=True):
            name = header_text(bytes(raw_name), None)
            fields.append((name, header_text(bytes(raw_value), name)))
        return fields


class Side:
    __slots__ = ("name", "decoder", "lost", "in_block", "block", "block_error", "block_stream", "block_end",
                 "limit", "_facts")

    def __init__(self, name: str, decoder: HeaderDecoder) -> None:
        self.name = name
        self.decoder = decoder
        self.lost: str | None = None  # why this direction's HPACK state is gone
        self.in_block = False  # a HEADERS frame without END_HEADERS came: CONTINUATION expected
        self.block = bytearray()  # the open block's fragment so far
        self.block_error: str | None = None  # why the open block cannot be decoded
        self.block_stream = 0
        self.block_end = False  # the block's HEADERS frame carried END_STREAM
        self.limit = TableSizeLimit()  # the table size the peer allows, acknowledged or in flight
        self._facts: dict[int, tuple[list[tuple[str, str]], HeaderFacts]] = {}

    def facts(self, headers: list[tuple[str, str]]) -> HeaderFacts:
        """`HeaderFacts` of a decoded block, worked out once per list: the decoder hands back
        the very list it gave before for a block it has seen (a server's every response and
        trailers, a client's every request of a kind), so such a list is read once. The
        results are shared: never modified."""
        known = self._facts.get(id(headers))
        if known is not None and known[0] is headers:
            return known[1]
        facts = HeaderFacts(headers)
        if len(self._facts) >= MAX_SPLITS:
            self._facts.clear()
        self._facts[id(headers)] = (headers, facts)  # the list kept alive: its id stays its own
        return facts

    def split(self, headers: list[tuple[str, str]]) -> Split:
        """`headers.split_headers` of a decoded block, once per list (`facts`)."""
        return self.facts(headers).split

    # Header blocks ---------------------------------------------------------------------
    def headers(self, frame: h2.Frame) -> bytes | None:
        """A HEADERS frame: its whole block (END_HEADERS), or None while CONTINUATION is due."""
        self.block_stream = frame.stream_id
        self.block_end = bool(frame.flags & h2.FLAG_END_STREAM)
        self.block_error = None
        try:
            fragment = frame.payload if frame.payload is not None and not frame.flags & _PADDED_OR_PRIORITY \
                else h2.header_block_fragment(frame)
        except h2.FrameError as exc:
            fragment = b""
            self.block_error = f"undecodable header block on stream {frame.stream_id} (FrameError: {exc})"
        if frame.flags & h2.FLAG_END_HEADERS:
            return fragment
        self.in_block = True
        self.block = bytearray()
        self._add(fragment)
        return None

    def continuation(self, frame: h2.Frame) -> bytes | None:
        """A CONTINUATION of the open block: the whole block at END_HEADERS, else None."""
        self._add(frame.payload or b"")
        if not frame.flags & h2.FLAG_END_HEADERS:
            return None
        block = bytes(self.block)
        self.end_block()
        return block

    def _add(self, fragment: bytes) -> None:
        if self.block_error is not None:
            return
        if len(self.block) + len(fragment) > MAX_HEADER_BLOCK:
            self.block = bytearray()  # freed now, not when the flood ends
            self.block_error = f"header block on stream {self.block_stream} over {MAX_HEADER_BLOCK} bytes " \
                               "(a CONTINUATION flood?); the rest of it is not kept"
            return
        self.block += fragment

    def end_block(self) -> None:
        self.in_block = False
        self.block = bytearray()

    # Table size ------------------------------------------------------------------------
    def peer_allows(self, value: int | None) -> None:
        """The peer sent SETTINGS (`value`: its HEADER_TABLE_SIZE, None when it has none).

        The tap sees a SETTINGS frame before the encoder can act on it (the relay forwards
        first), but blocks already in flight were encoded under the previous limit: the
        decoder allows the larger of the two until the acknowledgement (h2.table_size).
        """
        self.decoder.max_allowed_table_size = self.limit.sent(value)

    def acknowledged(self) -> None:
        """This side acknowledged the peer's oldest SETTINGS still in flight."""
        self.decoder.max_allowed_table_size = self.limit.acknowledged()
