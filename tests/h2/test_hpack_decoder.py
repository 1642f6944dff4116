"""cri_proxy/h2/hpack_decoder.py: the fast HPACK decoder, against the reference `hpack` package."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hpack import Decoder as ReferenceHpack
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple

from cri_proxy.h2 import hpack_decoder as hpack_fast
from cri_proxy.recorder.wire import header_text

pytestmark = pytest.mark.timeout(20)


# The HPACK decoder against the reference ---------------------------------------------------
NAMES = [":path", ":status", "content-type", "user-agent", "grpc-timeout", "traceparent", "x-a", "x-b-bin",
         "accept-encoding", "cookie", "grpc-message"]


def random_headers(rng: random.Random) -> list[Any]:
    headers: list[Any] = []
    for _ in range(rng.randrange(0, 12)):
        name = rng.choice(NAMES) if rng.random() < 0.7 else "x-" + "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz-0123456789") for _ in range(rng.randrange(1, 30)))
        size = rng.choice([0, 1, 5, 20, 100, 300] + ([3000, 5000] if rng.random() < 0.05 else []))
        value = bytes(rng.randrange(32, 127) if rng.random() < 0.9 else rng.randrange(256) for _ in range(size))
        if rng.random() < 0.3 and headers:
            name, value = headers[-1][0], headers[-1][1]  # repeats get indexed
        kind = NeverIndexedHeaderTuple if rng.random() < 0.15 else HeaderTuple
        headers.append(kind(name.encode() if isinstance(name, str) else name, value))
    return headers


@pytest.mark.parametrize("seed", range(12))
def test_hpack_fast_matches_the_reference_decoder(seed: int) -> None:
    rng = random.Random(seed)
    def latin1(raw: bytes, name: str | None) -> str:  # one-to-one: equal text means equal bytes
        return raw.decode("latin-1")

    encoder, reference = Encoder(), ReferenceHpack(max_header_list_size=1 << 24)
    fast, tapped = hpack_fast.Decoder(text=latin1), hpack_fast.Decoder(text=header_text)
    reference.max_allowed_table_size = fast.max_allowed_table_size = tapped.max_allowed_table_size = 8192
    for _ in range(150):
        if rng.random() < 0.1:  # table size updates, down to sizes that evict on every insert
            encoder.header_table_size = rng.choice([0, 64, 200, 1024, 4096, 8192])
        block = encoder.encode(random_headers(rng), huffman=rng.random() < 0.6)
        expected = reference.decode(block, raw=True)
        assert fast.decode(block) == [(latin1(n, None), latin1(v, None)) for n, v in expected]
        assert tapped.decode(block) == [(header_text(n, None), header_text(v, header_text(n, None)))
                                        for n, v in expected]
        assert fast.header_table_size == tapped.header_table_size == reference.header_table_size


def test_hpack_fast_rejects_what_the_reference_rejects() -> None:
    for bad in (b"\x80", b"\xbf", b"\xff\xff\xff\xff\xff\xff\xff", b"\x40\x85abc", b"\x00\x81\xff\x00",
                b"\x00\x81a\x81\x00", b"\x3f\xe1\x7f", b"\x82\x20"):
        with pytest.raises(hpack_fast.HPACKDecodingError):
            hpack_fast.Decoder().decode(bad)
        with pytest.raises(Exception):
            ReferenceHpack().decode(bad)
    huffman = hpack_fast.decode_huffman
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    encode = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode
    rng = random.Random(1)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        assert huffman(encode(data)) == data
    for bad in (b"\x00", b"\xff\xff\xff\xff", b"\xfe"):  # padding not all ones / the EOS symbol
        with pytest.raises(hpack_fast.HPACKDecodingError):
            huffman(bad)


def test_hpack_fast_repeated_block_follows_the_table() -> None:
    """A block decoded before is looked up only while the dynamic table is unchanged: the
    same bytes (an index into the table) mean another field once the table has moved."""
    decoder = hpack_fast.Decoder()
    add_a, add_b, newest = b"\x40\x03x-a\x011", b"\x40\x03x-b\x012", b"\xbe"  # 0xbe: index 62
    decoder.decode(add_a)
    assert decoder.decode(newest) == [("x-a", "1")]
    assert decoder.decode(newest) == [("x-a", "1")]  # looked up
    decoder.decode(add_b)
    assert decoder.decode(newest) == [("x-b", "2")]
    assert decoder.decode(b"\xbf") == [("x-a", "1")]  # index 63: the older entry
    decoder.decode(b"\x20")  # a table size update to 0 empties the table
    with pytest.raises(hpack_fast.HPACKDecodingError):
        decoder.decode(newest)
