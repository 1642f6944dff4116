"""A recorder link's bytes fed to a `model.link_format.Reader` in pieces, as a socket may cut them."""

from __future__ import annotations

from collections.abc import Callable

from cri_proxy.model.link_format import Reader


def feed_in_pieces(data: bytes, sizes: tuple[int, ...], take: Callable[[int, memoryview, int, int], None]) -> None:
    """Feed `data` to a new Reader in pieces of `sizes`, then the rest; `take` gets each message."""
    reader = Reader()
    pos = 0
    for size in sizes:
        reader.feed(data[pos:pos + size], take)
        pos += size
    reader.feed(data[pos:], take)
