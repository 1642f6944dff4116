"""The first request's :path, read without decoding the rest of the block: the same answer as
hpack's full decoder on header lists hpack's encoder makes, in bounded time on any block."""

from __future__ import annotations

import time

import pytest
from hpack import Decoder, Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from cri_proxy.h2.hpack_decoder import HPACKDecodingError
from cri_proxy.h2.request_path import MAX_STRING, first_request_path

pytestmark = pytest.mark.timeout(60)

_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
_pseudo = st.lists(st.sampled_from([(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                                    (":method", "GET")]), max_size=3)
_regular = st.lists(st.tuples(_text.map(lambda t: "x-" + t.lower()), _text), max_size=5)


@settings(max_examples=300, deadline=None)
@given(before=_pseudo, path=_text.map(lambda t: "/" + t), after=_regular, huffman=st.booleans(),
       sensitive=st.booleans())
def test_the_path_is_what_a_full_decoder_reads(before: list[tuple[str, str]], path: str,
                                               after: list[tuple[str, str]], huffman: bool, sensitive: bool) -> None:
    headers = [*before, (":path", path), *after]
    block = Encoder().encode(headers, huffman=huffman)
    decoded = dict((k.decode(), v.decode()) for k, v in Decoder().decode(block, raw=True))
    assert first_request_path(block) == decoded[":path"] == path


@settings(max_examples=100, deadline=None)
@given(regular=_regular.filter(bool), path=_text.map(lambda t: "/" + t))
def test_a_path_after_a_regular_field_is_no_path(regular: list[tuple[str, str]], path: str) -> None:
    # RFC 9113 §8.3: pseudo-header fields come first; such a block is malformed
    assert first_request_path(Encoder().encode([*regular, (":path", path)])) is None


def test_a_repeated_path_added_to_the_table_is_found_by_index() -> None:
    encoder = Encoder()
    block = encoder.encode([(":method", "POST"), (":path", "/a.B/C")])
    assert first_request_path(block) == "/a.B/C"


@pytest.mark.parametrize("block", [
    bytes([0x83]) * 500_000,  # one-byte references to :method POST, 16.5 MB decoded
    bytes([0x83]) * 3 + b"\x44" + b"\x7f" + (100_000 - 127).to_bytes(3, "little") + b"x" * 100_000,
    b"\x40\x05:path" + b"\x7f\xe1\x07" + b"y" * 1000 + bytes([0x83]) * 100_000,
], ids=["references", "long path", "long literal"])
def test_any_block_is_read_in_bounded_time(block: bytes) -> None:
    start = time.perf_counter()
    try:
        path = first_request_path(block)
    except HPACKDecodingError:
        path = "error"
    assert time.perf_counter() - start < 0.01
    assert path is None or path == "error" or len(path) <= MAX_STRING


@pytest.mark.parametrize("block", [b"\x80", b"\xbf", b"\x44\x7f", b"\x00\x05:pa"])
def test_bad_hpack_is_an_error(block: bytes) -> None:
    with pytest.raises(HPACKDecodingError):
        first_request_path(block)


def test_a_lowered_limit_must_be_followed_by_a_size_update() -> None:
    # RFC 7541 §4.2: the upstream's SETTINGS took the table below its initial 4,096 bytes.
    encoder = Encoder()
    plain = encoder.encode([(":method", "POST"), (":path", "/a.B/C")])
    with pytest.raises(HPACKDecodingError, match="RFC 7541"):
        first_request_path(plain, table_size=0, due=0)
    encoder = Encoder()
    encoder.header_table_size = 0
    assert first_request_path(encoder.encode([(":method", "POST"), (":path", "/a.B/C")]), 0, 0) == "/a.B/C"
    assert first_request_path(plain, table_size=8192, due=None) == "/a.B/C"  # a raised limit asks nothing
    with pytest.raises(HPACKDecodingError, match="above the allowed"):
        first_request_path(b"\x3f\xe1\x1f" + plain, table_size=1024)  # an update past the limit
