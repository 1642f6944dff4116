"""The relay's HPACK encoder (h2/hpack_encoder.py) against the `hpack` reference decoder."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder

from cri_proxy.h2.hpack_encoder import Encoder, integer, latin1, literal
from cri_proxy.h2.hpack_decoder import Decoder as FastDecoder

BASE = [(":method", "POST"), (":scheme", "http"), (":path", "/runtime.v1alpha2.RuntimeService/Version"),
        (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
        ("user-agent", "grpc-go/1.59.0")]


def decoded(decoder: Decoder, block: bytes) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in decoder.decode(block, raw=True)]


@pytest.mark.parametrize("seed", range(40))
def test_random_header_lists_decode_as_they_were_with_the_same_table(seed: int) -> None:
    rnd = random.Random(seed)
    encoder, decoder = Encoder(), Decoder()
    for _ in range(60):
        if rnd.random() < 0.1:
            size = rnd.choice([0, 64, 256, 4096, 1 << 16])
            encoder.set_max_size(size)
            decoder.max_allowed_table_size = size
        headers = BASE + [("grpc-timeout", f"{rnd.randint(1, 10 ** 7)}u"),
                          (f"x-{rnd.randint(0, 30)}", "v" * rnd.randint(0, 600)),
                          ("authorization", "Bearer \xff"), ("x-bin", "".join(chr(rnd.randint(0, 255)) for _ in range(8)))]
        block = encoder.encode(headers)
        assert decoded(decoder, block) == headers
        assert decoder.header_table._current_size == encoder.table_size <= decoder.max_allowed_table_size


def test_a_warm_connection_sends_references_and_changing_values_as_literals() -> None:
    encoder, decoder = Encoder(), Decoder()
    first = BASE + [("grpc-timeout", "1S")]
    assert decoded(decoder, encoder.encode(first)) == first
    block = encoder.encode(BASE + [("grpc-timeout", "2S")])
    assert decoded(decoder, block) == BASE + [("grpc-timeout", "2S")]
    assert len(block) < 25 and b"grpc-timeout" in block
    assert all(name != "grpc-timeout" for (name, _), _size in encoder._entries)


def test_sensitive_fields_are_never_indexed() -> None:
    block = Encoder().encode([("authorization", "secret")])
    assert block[0] & 0xF0 == 0x10  # literal never indexed (RFC 7541 §6.2.3)
    assert Encoder().encode([("authorization", "secret")]) == block


def test_a_lowered_table_is_announced_once_at_the_next_block() -> None:
    encoder, decoder = Encoder(), Decoder()
    assert decoded(decoder, encoder.encode(BASE)) == BASE
    encoder.set_max_size(10)
    encoder.set_max_size(200)  # two changes before a block: the smallest, then the final size
    block = encoder.encode(BASE)
    assert block.startswith(integer(10, 5, 0x20) + integer(200, 5, 0x20))
    decoder.max_allowed_table_size = 200
    assert decoded(decoder, block) == BASE
    again = encoder.encode(BASE)
    assert again[0] & 0xE0 != 0x20 and decoded(decoder, again) == BASE
    assert decoder.header_table._current_size == encoder.table_size <= 200


def test_empty_peer_takes_over_a_table_another_encoder_filled() -> None:
    # The relay passed a client's blocks on until now: the runtime's decoder holds the client's
    # entries, which this encoder never saw. Its first block empties that table, then indexes anew.
    client, decoder = Encoder(), Decoder()
    for i in range(5):
        decoded(decoder, client.encode(BASE + [("x-call", f"c{i}")]))
    assert decoder.header_table._current_size > 0
    encoder = Encoder()
    encoder.set_max_size(1000)
    encoder.empty_peer()
    block = encoder.encode(BASE + [("x-call", "c4")])
    assert block.startswith(integer(0, 5, 0x20) + integer(1000, 5, 0x20))
    decoder.max_allowed_table_size = 4096
    assert decoded(decoder, block) == BASE + [("x-call", "c4")]
    assert decoded(decoder, encoder.encode(BASE + [("x-call", "c4")])) == BASE + [("x-call", "c4")]
    assert decoder.header_table._current_size == encoder.table_size <= 1000
    with pytest.raises(RuntimeError):
        encoder.empty_peer()  # only before it has a table of its own


def test_literals_for_answers_touch_no_table_and_the_fast_decoder_reads_latin1() -> None:
    decoder = Decoder()
    block = literal("grpc-status", "12") + literal(":status", "200") + literal("x-text", "caf\xe9")
    assert decoded(decoder, block) == [("grpc-status", "12"), (":status", "200"), ("x-text", "caf\xe9")]
    assert decoder.header_table._current_size == 0
    assert FastDecoder(text=latin1).decode(Encoder().encode([("x", "\xff\x00")])) == [("x", "\xff\x00")]
