"""cri_proxy/recorder/squeeze.py (with recorder/known.py, which reads them back): known bodies in the link bytes made references as they are
read, and the bytes the tap is fed still exactly the relay's, however reads and chunks cut them."""

from __future__ import annotations

import random

import pytest

from cri_proxy.model import link
from cri_proxy.recorder.known import FIXED, HELD_MAX, SQUEEZED, Known, pieces
from cri_proxy.recorder.squeeze import Squeezer
from cri_proxy.recorder.wire import LastBodies

PATH = "/runtime.v1.RuntimeService/ListContainers"


def published(*bodies: bytes) -> tuple[Known, LastBodies]:
    memo = LastBodies()
    for i, body in enumerate(bodies):
        memo.put((f"{PATH}{i}", False), body)
    known = Known()
    known.publish(memo)
    return known, memo


def payload(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


def squeezed(squeezer: Squeezer, stream: bytes, rng: random.Random, most: int = 200_000) -> bytes:
    """`stream` read in pieces of random size, each squeezed as the spool would."""
    out = []
    pos = 0
    while pos < len(stream):
        size = rng.choice((1, 3, 5, 26, 27, 4096, rng.randrange(1, most)))
        data = bytearray(stream[pos:pos + size]) if rng.random() < 0.5 else stream[pos:pos + size]
        got = squeezer.squeeze(data, len(data))
        out.append(bytes(data) if got is None else b"".join(got))
        pos += size
    return b"".join(out)


def expanded(known: Known, stream: bytes) -> tuple[list[bytes], int]:
    """The messages of a squeezed stream as they were sent (SQUEEZED ones put back together
    and their references released), and how many were squeezed."""
    view = memoryview(stream)
    out = []
    count = 0
    for kind, start, stop in link.messages(view):
        if kind != SQUEEZED:
            out.append(bytes(view[start - link.HEAD:stop]))
            continue
        count += 1
        conn_id, from_client, wall, mono, size = FIXED.unpack_from(view, start - link.HEAD)[2:]
        parts, numbers = pieces(known, view, start, stop)
        data = b"".join(bytes(part) for part in parts)
        assert link.CHUNK_HEAD.size + len(data) == size
        out.append(link.chunk_head(conn_id, bool(from_client), wall, mono, len(data)) + data)
        known.release(numbers)
    assert sum(4 + link.LENGTH.unpack_from(view, pos)[0] for pos in _starts(view)) == len(stream)
    return out, count


def _starts(view: memoryview) -> list[int]:
    return [start - link.HEAD for _, start, _ in link.messages(view)]


def data_frames(stream_id: int, data: bytes, most: int) -> bytes:
    """`data` in DATA frames of at most `most` bytes (grpc-go sends 16 KiB ones)."""
    return b"".join(len(data[at:at + most]).to_bytes(3, "big") + b"\x00\x00" + stream_id.to_bytes(4, "big")
                    + data[at:at + most] for at in range(0, len(data), most))


def frames_with(bodies: list[bytes], rng: random.Random) -> bytes:
    """A direction's bytes: HEADERS-like noise, and DATA payloads, some of them known bodies,
    some of those in DATA frames of 16 KiB or less."""
    out = bytearray()
    for _ in range(rng.randrange(1, 6)):
        out += rng.randbytes(rng.randrange(0, 300))
        choice = rng.random()
        if choice < 0.3:
            out += payload(rng.choice(bodies))
        elif choice < 0.6:
            out += data_frames(rng.randrange(1, 99, 2), payload(rng.choice(bodies)), rng.choice((16_384, 4_000)))
        elif choice < 0.8:  # the same first bytes, then different: a near miss
            body = bytearray(rng.choice(bodies))
            body[rng.randrange(40, len(body))] ^= 0xFF
            out += payload(bytes(body))
        else:
            out += rng.randbytes(rng.randrange(0, 9000))
    return bytes(out)


@pytest.mark.parametrize("seed", [16, 17, 18])
def test_a_stream_squeezed_as_read_comes_back_message_for_message_byte_for_byte(seed: int) -> None:
    rng = random.Random(seed)
    bodies = [rng.randbytes(26_000), rng.randbytes(5_000), bytes(9_000)]
    known, _ = published(*bodies)
    sent = []
    for i in range(300):
        if rng.random() < 0.15:
            sent.append(link.message(rng.choice((link.OPEN, link.GAP, link.CALL)), rng.randbytes(rng.randrange(0, 7000))))
            continue
        data = frames_with(bodies, rng)
        cut = rng.randrange(0, len(data) + 1)  # the relay's reads cut anywhere: a body across two chunks
        for part in (data[:cut], data[cut:]):
            sent.append(link.chunk_head(i % 3, i % 2 == 0, 1.5 * i, 2.5 * i, len(part)) + part)
    stream = b"".join(sent)
    kept = squeezed(Squeezer(known), stream, rng)
    back, count = expanded(known, kept)
    assert back == sent
    assert count > 100
    assert len(kept) < len(stream) // 2
    assert not known.refs and known.held == 0


def test_a_repeated_body_waits_in_the_backlog_as_a_reference() -> None:
    body = random.Random(1).randbytes(26_000)
    known, _ = published(body)
    chunks = [link.chunk_head(1, False, 1.0, 2.0, 26_100) + b"h" * 45 + payload(body) + b"t" * 50 for _ in range(100)]
    stream = b"".join(chunks)
    kept = Squeezer(known).squeeze(stream, len(stream))
    assert kept is not None
    assert sum(len(piece) for piece in kept) < 100 * 250
    assert sum(known.refs.values()) == 100


def test_nothing_known_nothing_changes_and_the_messages_are_still_followed() -> None:
    known = Known()
    squeezer = Squeezer(known)
    body = bytes(range(256)) * 40
    first = link.chunk_head(1, False, 1.0, 2.0, len(body) + 5) + payload(body)
    assert squeezer.squeeze(first[:3], 3) is None  # a message's length cut: followed across reads
    assert squeezer.squeeze(first[3:], len(first) - 3) is None
    known.publish(published(body)[1])
    again = first
    back, count = expanded(known, b"".join(squeezer.squeeze(again, len(again)) or [again]))
    assert back == [again] and count == 1


def test_a_body_no_longer_published_is_held_while_referenced_and_no_more_past_the_bound() -> None:
    rng = random.Random(2)
    old, new = rng.randbytes(20_000), rng.randbytes(20_000)
    known, memo = published(old)
    squeezer = Squeezer(known)
    chunk = link.chunk_head(1, False, 1.0, 2.0, 20_005) + payload(old)
    kept = b"".join(squeezer.squeeze(chunk, len(chunk)) or [])
    memo.put((PATH + "0", False), new)
    known.publish(memo)  # `old` is referenced from the backlog: held, not dropped
    assert known.held == len(payload(old))
    back, _ = expanded(known, kept)
    assert back == [chunk]
    assert known.held == 0 and len(known.bodies) == 1
    known.held = HELD_MAX + 1  # as if that many were held: no reference is made
    fresh = link.chunk_head(1, False, 1.0, 2.0, 20_005) + payload(new)
    got = squeezer.squeeze(fresh, len(fresh))
    assert got is not None and b"".join(got) == fresh


def test_a_body_in_16_kib_data_frames_is_referenced_frame_by_frame_across_chunks() -> None:
    """As grpc-go sends a 40 KB reply: three DATA frames, cut by the relay's read inside the
    second; only the frame headers and the bytes around stay literal."""
    body = random.Random(3).randbytes(40_000)
    known, _ = published(body)
    frames = b"h" * 60 + data_frames(7, payload(body), 16_384) + b"t" * 40
    cut = 25_000
    sent = [link.chunk_head(1, False, 1.0, 2.0, cut) + frames[:cut],
            link.chunk_head(1, False, 1.0, 2.0, len(frames) - cut) + frames[cut:]]
    squeezer = Squeezer(known)
    kept = b"".join(b"".join(squeezer.squeeze(chunk, len(chunk)) or [chunk]) for chunk in sent)
    assert len(kept) < 400
    back, count = expanded(known, kept)
    assert back == sent and count == 2


def test_a_squeezer_that_fails_lets_the_bytes_through_as_they_came_from_then_on() -> None:
    body = random.Random(4).randbytes(20_000)
    known, _ = published(body)
    squeezer = Squeezer(known)
    chunk = link.chunk_head(1, False, 1.0, 2.0, 20_005) + payload(body)
    first = squeezer.squeeze(chunk[:10_000], 10_000)  # held: the rest is not read yet
    assert first == []
    known.current = (None,)  # type: ignore[assignment]  # as a bug would leave it: the squeezer raises
    rest = squeezer.squeeze(chunk[10_000:], len(chunk) - 10_000)
    assert rest is not None and b"".join(rest) == chunk  # what it held, then the read, as they came
    assert squeezer.broken and squeezer.squeeze(chunk, len(chunk)) is None
