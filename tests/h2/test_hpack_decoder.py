"""cri_proxy/h2/hpack_decoder.py: the fast HPACK decoder, against the reference `hpack` package."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hpack import Decoder as ReferenceHpack
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from cri_proxy.h2 import hpack_decoder as hpack_fast
from cri_proxy.recorder.headers import header_text

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


# RFC 7541 §4.2: a lowered limit must be followed by a size update ------------------------
_field = st.tuples(st.sampled_from(NAMES) | st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
                   .map(lambda t: "x-" + t), st.binary(max_size=120), st.booleans())
_limit = st.sampled_from([0, 32, 64, 200, 1024, 4096, 8192])
# One round: maybe new limits (the decoder's, as acknowledged SETTINGS), the encoder's own size
# within the smallest of them (None: it keeps its table), then a block.
_round = st.tuples(st.lists(_limit, max_size=2), st.one_of(st.none(), _limit), st.lists(_field, max_size=8),
                   st.booleans())


def _latin1(raw: bytes, name: str | None) -> str:
    return raw.decode("latin-1")


@settings(max_examples=200, deadline=None)
@given(rounds=st.lists(_round, min_size=1, max_size=25))
def test_hpack_fast_matches_the_reference_across_lowered_limits(
        rounds: list[tuple[list[int], int | None, list[tuple[str, bytes, bool]], bool]]) -> None:
    """Valid blocks only: after the limit falls below the table's size the encoder shrinks its
    table (hpack's Encoder then opens its next block with the size updates); both decoders
    must read the same fields and keep the same table size."""
    encoder, reference, fast = Encoder(), ReferenceHpack(max_header_list_size=1 << 24), hpack_fast.Decoder(text=_latin1)
    for limits, own, fields, huffman in rounds:
        for limit in limits:
            reference.max_allowed_table_size = fast.max_allowed_table_size = limit
        if limits:
            smallest = min(limits)
            size = min(own if own is not None else encoder.header_table_size, limits[-1])
            if encoder.header_table_size > smallest:
                encoder.header_table_size = smallest  # signalled first: the smallest of the interval
            if size != encoder.header_table_size:
                encoder.header_table_size = size  # then the final size (RFC 7541 §4.2: at most two updates)
        elif own is not None:
            encoder.header_table_size = min(own, fast.max_allowed_table_size)
        headers = [(NeverIndexedHeaderTuple if never else HeaderTuple)(name.encode(), value)
                   for name, value, never in fields]
        block = encoder.encode(headers, huffman=huffman)
        expected = reference.decode(block, raw=True)
        assert fast.decode(block) == [(_latin1(n, None), _latin1(v, None)) for n, v in expected]
        assert fast.header_table_size == reference.header_table_size


@settings(max_examples=100, deadline=None)
@given(fields=st.lists(_field, min_size=1, max_size=6), limit=st.sampled_from([0, 64, 1024]),
       huffman=st.booleans())
def test_a_lowered_limit_without_a_size_update_is_refused(fields: list[tuple[str, bytes, bool]], limit: int,
                                                         huffman: bool) -> None:
    encoder, fast = Encoder(), hpack_fast.Decoder(text=_latin1)
    fast.decode(encoder.encode([(n.encode(), v) for n, v, _ in fields], huffman=huffman))
    fast.max_allowed_table_size = limit  # the encoder ignores the new limit:
    with pytest.raises(hpack_fast.HPACKDecodingError, match="RFC 7541"):
        fast.decode(encoder.encode([(":method", "GET")]))


def test_must_resize_says_a_repeated_block_would_be_refused_now() -> None:
    fast, get = hpack_fast.Decoder(), b"\x82"  # :method GET
    fast.decode(get)
    assert not fast.must_resize
    fast.max_allowed_table_size = 100  # the same block, as it was, is not valid HPACK any more
    assert fast.must_resize
    with pytest.raises(hpack_fast.HPACKDecodingError, match="RFC 7541"):
        fast.decode(get)
    fast.decode(b"\x3f\x45" + get)  # the update it was due
    assert not fast.must_resize


def test_size_updates_against_the_limit() -> None:
    def decoder(limit: int) -> hpack_fast.Decoder:
        fast = hpack_fast.Decoder()
        fast.max_allowed_table_size = limit
        return fast

    get = b"\x82"  # :method GET
    assert decoder(100).decode(b"\x3f\x45" + get) == [(":method", "GET")]  # an update to exactly 100
    for block, why in ((get, "does not begin"), (b"\x3f\x46" + get, "do not bring"),  # 101 > 100
                       (b"\x3f\xe1\x1f" + get, "do not bring")):  # 4096: allowed by neither
        with pytest.raises(hpack_fast.HPACKDecodingError, match=why):
            decoder(100).decode(block)
        with pytest.raises(Exception):  # the reference refuses every one of them too
            reference = ReferenceHpack()
            reference.max_allowed_table_size = 100
            reference.decode(block)
    shrunk = decoder(100)
    shrunk.decode(b"\x3f\x45")  # to 100: nothing is due any more, and no update may pass the limit
    with pytest.raises(hpack_fast.HPACKDecodingError, match="above the allowed 100"):
        shrunk.decode(b"\x3f\x46" + get)
    raised = hpack_fast.Decoder()
    raised.max_allowed_table_size = 8192  # a higher limit asks nothing of the encoder
    assert raised.decode(get) == [(":method", "GET")]
    lowered_then_raised = decoder(0)
    lowered_then_raised.max_allowed_table_size = 4096
    with pytest.raises(hpack_fast.HPACKDecodingError, match="within the 0 bytes"):
        lowered_then_raised.decode(b"\x3f\xe1\x1f" + get)  # the final size alone: the smallest is due first
    lowered_then_raised = decoder(0)
    lowered_then_raised.max_allowed_table_size = 4096
    assert lowered_then_raised.decode(b"\x20\x3f\xe1\x1f" + get) == [(":method", "GET")]  # 0, then 4096
    assert decoder(0).decode(b"\x20") == [] and decoder(4096).decode(get) == [(":method", "GET")]


# The decoder's look-up of repeated blocks --------------------------------------------------
def test_a_repeated_block_is_looked_up_only_while_the_table_stays_as_it_was() -> None:
    decoder = hpack_fast.Decoder()
    decoder.decode(b"\x40\x03x-a\x011")  # x-a: 1 at index 62
    first = decoder.decode(b"\x82\xbe")
    assert first == [(":method", "GET"), ("x-a", "1")] and decoder.decode(b"\x82\xbe") is first  # looked up
    decoder.decode(b"\x40\x03x-b\x012")  # the table changed between two identical blocks
    again = decoder.decode(b"\x82\xbe")
    assert again == [(":method", "GET"), ("x-b", "2")] and first == [(":method", "GET"), ("x-a", "1")]


def test_a_block_that_changes_the_table_is_decoded_every_time() -> None:
    decoder = hpack_fast.Decoder()
    add = b"\x40\x03x-a\x011"
    assert decoder.decode(add) == decoder.decode(add) == [("x-a", "1")]
    assert decoder.decode(b"\xbe\xbf") == [("x-a", "1"), ("x-a", "1")]  # inserted twice: 62 and 63


def test_eviction_changes_what_a_looked_up_block_means() -> None:
    decoder = hpack_fast.Decoder()
    decoder.decode(b"\x3f\x45")  # a table of 100 bytes: two entries of 36 fit, a third evicts the oldest
    decoder.decode(b"\x40\x03x-a\x011")
    decoder.decode(b"\x40\x03x-b\x012")
    assert decoder.decode(b"\xbf") == [("x-a", "1")]  # index 63: the older
    decoder.decode(b"\x40\x03x-c\x013")  # evicts x-a
    assert decoder.decode(b"\xbf") == [("x-b", "2")]
    decoder.decode(b"\x40\x01y\x50" + b"v" * 80)  # an entry of 113 bytes, larger than the table, empties it
    with pytest.raises(hpack_fast.HPACKDecodingError):
        decoder.decode(b"\xbf")


def test_a_size_update_or_a_lowered_limit_ends_the_look_up() -> None:
    decoder = hpack_fast.Decoder()
    decoder.decode(b"\x40\x03x-a\x011")
    assert decoder.decode(b"\xbe") == [("x-a", "1")] == decoder.decode(b"\xbe")
    assert decoder.decode(b"\x3f\xe1\x1f\xbe") == [("x-a", "1")]  # an update to the same 4096 keeps the entry...
    decoder.decode(b"\x20")  # ...an update to 0 empties the table: the block looked up before now fails
    with pytest.raises(hpack_fast.HPACKDecodingError):
        decoder.decode(b"\xbe")
    lowered = hpack_fast.Decoder()
    lowered.decode(b"\x40\x03x-a\x011")
    lowered.decode(b"\xbe")
    lowered.max_allowed_table_size = 0  # SETTINGS_HEADER_TABLE_SIZE 0 acknowledged: an update is due first
    with pytest.raises(hpack_fast.HPACKDecodingError, match="RFC 7541"):
        lowered.decode(b"\xbe")


@pytest.mark.parametrize("huffman", [True, False])
def test_a_repeated_block_with_literals_reads_as_the_reference_every_time(huffman: bool) -> None:
    """Never-indexed literals (Huffman-coded or not) leave the table alone: such a block is
    looked up, and must read as the reference decodes it, call after call."""
    encoder, reference, fast = Encoder(), ReferenceHpack(), hpack_fast.Decoder(text=_latin1)
    headers = [(":method", "POST"), ("content-type", "application/grpc"),
               NeverIndexedHeaderTuple(b"grpc-timeout", b"1999937u"), NeverIndexedHeaderTuple(b"x-bin", b"\x00\xff")]
    blocks = [encoder.encode(headers, huffman=huffman) for _ in range(4)]  # the first adds content-type
    assert blocks[1] == blocks[2] == blocks[3] != blocks[0]
    results = []
    for block in blocks:
        expected = [(_latin1(n, None), _latin1(v, None)) for n, v in reference.decode(block, raw=True)]
        results.append(fast.decode(block))
        assert results[-1] == expected
    assert results[1] is results[2] is results[3]  # looked up
