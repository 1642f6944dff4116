"""cri_proxy/recorder/packing.py: grpc-timeout split off a set, sets stored once per text in a
real SQLite file (and forgotten after a rollback), keyframes and the deltas against them.
Through the writer and read back: test_packing_written.py."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from cri_proxy.recorder import packing
from cri_proxy.store import bodies, db
from cri_proxy.store.rows import metadata_text
from tests.helpers.calls import T0, rows, stats_reply

HEADERS = [("content-type", "application/grpc"), ("user-agent", "grpc-go/1.68.1")]
STATS = "/runtime.v1.RuntimeService/ListContainerStats"


def test_one_well_formed_timeout_is_split_off_and_nothing_else() -> None:
    blank, value = packing.split_timeout([*HEADERS, ("grpc-timeout", "119998m"), ("te", "trailers")])
    assert value == "119998m" and blank == [*HEADERS, ("grpc-timeout", ""), ("te", "trailers")]
    assert packing.split_timeout(HEADERS) == (HEADERS, None)
    for odd in ([("grpc-timeout", "1m"), ("grpc-timeout", "2m")],  # two: which one goes where?
                [("grpc-timeout", "123456789m")],  # 9 digits: not gRPC's shape
                [("grpc-timeout", '1"m')], [("grpc-timeout", "")]):
        assert packing.split_timeout(odd) == (odd, None)


def test_a_timeout_is_a_number_when_the_number_spells_it_back_and_text_otherwise() -> None:
    assert packing.timeout_code("1999881u") == (None, 1999881 * 8 + 4)
    assert packing.timeout_code("99999999H") == (None, 99999999 * 8)  # the largest: under 2^30, 4 bytes
    assert packing.timeout_code("0n") == (None, 5)
    assert [packing.timeout_code(f"7{u}")[1] for u in "HMSmun"] == [56, 57, 58, 59, 60, 61]
    for odd in ("007S", "00m", "5x"):  # leading zeros would come back without them
        assert packing.timeout_code(odd) == (odd, None)


def _conn(tmp_path: Path) -> sqlite3.Connection:
    return db.open_database(tmp_path / "calls.db")


def test_a_set_is_stored_once_per_text_and_forgotten_after_a_rollback(tmp_path: Path) -> None:
    conn = _conn(tmp_path)
    sets = packing.MetadataSets()
    conn.execute("BEGIN IMMEDIATE")
    first = sets.id_of(conn, HEADERS)
    assert sets.id_of(conn, list(HEADERS)) == first and sets.id_of(conn, []) is None
    other = sets.id_of(conn, HEADERS[:1])
    conn.execute("COMMIT")
    sets.committed()
    assert first != other
    assert conn.execute("SELECT id, pairs FROM metadata_sets ORDER BY id").fetchall() == [
        (first, metadata_text(HEADERS)), (other, metadata_text(HEADERS[:1]))]
    conn.execute("BEGIN IMMEDIATE")
    lost = sets.id_of(conn, [("x", "1")])
    conn.execute("ROLLBACK")
    sets.clear()  # what the writer does after a rollback
    conn.execute("BEGIN IMMEDIATE")
    again = sets.id_of(conn, [("x", "1")])
    assert sets.id_of(conn, HEADERS) == first  # found in the file, not only in the cache
    conn.execute("COMMIT")
    assert conn.execute("SELECT pairs FROM metadata_sets WHERE id = ?", (again,)).fetchone() == ('[["x", "1"]]',)
    assert lost == again  # the rolled-back id was handed out again: trusting it would have been wrong
    conn.close()


def _body(rng: random.Random, n: int = 4000) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def test_a_body_like_the_keyframe_is_a_delta_and_decodes_with_it() -> None:
    rng = random.Random(3)
    keyframe = _body(rng)
    similar = bytearray(keyframe)
    for i in range(0, len(similar), 97):
        similar[i] ^= 0x5A
    frames = packing.Keyframes()
    path = "/runtime.v1.RuntimeService/ListContainerStats"
    assert frames.delta(path, bytes(similar)) is None  # no keyframe yet
    frames.stage(path, 7, keyframe)
    base, delta, depth = frames.delta(path, bytes(similar)) or (0, b"", 0)
    assert base == 7 and depth == 1 and len(delta) * packing.DELTA_MAX_RATIO <= len(similar)
    assert bodies.undelta(delta, keyframe) == bytes(similar)
    assert frames.delta(path, _body(rng)) is None  # unlike it: stored as it is
    assert frames.delta("/runtime.v1.RuntimeService/ListPodSandbox", bytes(similar)) is None  # per method


def test_a_delta_is_the_base_of_the_next_a_second_later_up_to_the_longest_chain() -> None:
    rng = random.Random(6)
    replies = [stats_reply(60, 10 * k, rng) for k in range(packing.MAX_CHAIN + 3)]
    frames = packing.Keyframes()
    frames.stage(STATS, 1, replies[0])
    frames.committed()
    bases, depths = [], []
    for k, reply in enumerate(replies[1:], start=2):
        base, delta, depth = frames.delta(STATS, reply) or (0, b"", 0)
        assert delta
        bases.append(base)
        depths.append(depth)
        frames.link(STATS, k, reply, depth, at=T0 + k * packing.CHAIN_STEP_S)
        frames.committed()
    # Each delta's base is the one before it, until the chain is MAX_CHAIN long: then the
    # keyframe again, and a new chain from there.
    assert bases == [1, *range(2, packing.MAX_CHAIN + 1), 1, packing.MAX_CHAIN + 2]
    assert depths == [*range(1, packing.MAX_CHAIN + 1), 1, 2]
    # Within CHAIN_STEP_S of the last link, the base stays: one compressor a second at most.
    frames.link(STATS, 100, replies[1], 3, at=T0 + (len(replies) + 0.5) * packing.CHAIN_STEP_S)
    assert (frames.delta(STATS, replies[2]) or (0,))[0] == len(replies)
    frames.clear()  # a rollback: no staged link is trusted
    assert frames.delta(STATS, replies[2]) is None


def test_a_keyframe_builds_its_compressor_only_for_a_body_that_may_be_its_delta() -> None:
    body = _body(random.Random(5))
    frame = packing.Keyframe(1, len(body), body)
    assert frame.data is body  # no dictionary tables yet: repeated replies never need them
    compressor = frame.compressor()
    assert frame.data is None and frame.compressor() is compressor  # built once, the body let go
    assert bodies.undelta(compressor.compress(body), body) == body


def test_staged_keyframes_are_dropped_by_clear_and_kept_by_committed() -> None:
    rng = random.Random(4)
    body = _body(rng)
    frames = packing.Keyframes()
    frames.stage("/a", 1, body)
    frames.clear()
    assert frames.delta("/a", body) is None
    frames.stage("/a", 2, body)
    frames.committed()
    assert (frames.delta("/a", body) or (0, b""))[0] == 2


def test_keyframes_beyond_their_memory_bound_are_forgotten_oldest_first() -> None:
    rng = random.Random(5)
    frames = packing.Keyframes(max_bytes=10_000)
    kept = {}
    for k in range(4):
        kept[k] = _body(rng)
        frames.stage(f"/m{k}", k + 1, kept[k])
        frames.committed()
    assert frames.delta("/m0", kept[0]) is None and frames.delta("/m1", kept[1]) is None
    assert frames.delta("/m3", kept[3]) is not None


# -- through the writer, read back by the reader ---------------------------------------------
