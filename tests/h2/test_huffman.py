"""cri_proxy/h2/huffman.py: the byte-wide Huffman decoder reads what `hpack`'s encoder writes and
refuses bad padding and the EOS symbol."""

from __future__ import annotations

import random

import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

from cri_proxy.h2 import huffman as h2huffman

pytestmark = pytest.mark.timeout(20)


def test_decode_huffman_reads_the_reference_encoding_and_refuses_bad_endings() -> None:
    huffman = h2huffman.decode_huffman
    encode = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode
    rng = random.Random(1)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        assert huffman(encode(data)) == data
    for bad in (b"\x00", b"\xff\xff\xff\xff", b"\xfe"):  # padding not all ones / the EOS symbol
        with pytest.raises(h2huffman.HPACKDecodingError):
            huffman(bad)
