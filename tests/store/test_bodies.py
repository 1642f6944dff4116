"""cri_proxy/store/bodies.py: a delta, plain or stats, decodes with its keyframe to the exact
bytes, and with any other bytes fails loudly instead of giving wrong ones; the plain delta
of schema 6 and the stats delta of 2 Dec 2026 (STATS_MARKER) still read; a real containerd's
replies are stored as stats deltas."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import zstandard

from cri_proxy.model.errors import StorageError
from cri_proxy.pb.runtime.v1 import api_pb2 as cri
from cri_proxy.store import bodies, statsdelta
from cri_proxy.store.varints import read_uvarint

T0 = 1_800_000_000_000_000_000


def test_a_delta_gives_back_the_exact_bytes_and_only_with_its_keyframe() -> None:
    rng = random.Random(1)
    keyframe = bytes(rng.randrange(256) for _ in range(50_000))
    body = keyframe[:20_000] + b"changed" + keyframe[20_007:] + b"\x00" * 10
    delta = bodies.compressor(keyframe).compress(body)
    assert len(delta) < len(body) // 20
    assert bodies.undelta(delta, keyframe) == body
    with pytest.raises(StorageError, match="does not decode with its keyframe"):
        bodies.undelta(delta, keyframe[:-1] + b"\x01")
    with pytest.raises(StorageError):
        bodies.undelta(delta[:-3], keyframe)


def _stats_reply(second: int, containers: int = 60) -> bytes:
    """A ListContainerStatsResponse whose read times and counters moved since second 0."""
    stats = [cri.ContainerStats(
        attributes=cri.ContainerAttributes(id=hashlib.sha256(b"%d" % i).hexdigest(),
                                           metadata=cri.ContainerMetadata(name=f"app-{i}")),
        cpu=cri.CpuUsage(timestamp=T0 + second * 10**9 + i * 40_123,
                         usage_core_nano_seconds=cri.UInt64Value(value=10**11 + second * (i + 1) * 7_777_777)))
        for i in range(containers)]
    return cri.ListContainerStatsResponse(stats=stats).SerializeToString()


def test_a_stats_reply_is_a_stats_delta_that_gives_back_the_exact_bytes_and_only_with_its_keyframe() -> None:
    keyframe, body = _stats_reply(0), _stats_reply(600)
    delta = bodies.compressor(keyframe).compress(body)
    assert delta[0] == bodies.NESTED_MARKER
    assert len(delta) < len(zstd_delta(keyframe, body))
    assert bodies.undelta(delta, keyframe) == body
    with pytest.raises(StorageError, match="does not decode with its keyframe"):
        bodies.undelta(delta, _stats_reply(10))  # a keyframe of the same layout: the CRC-32 tells
    with pytest.raises(StorageError, match="does not decode with its keyframe"):
        bodies.undelta(delta, keyframe[:-1] + b"\x01")
    with pytest.raises(StorageError):
        bodies.undelta(delta[:-3], keyframe)


def test_a_stats_delta_that_would_not_rebuild_the_body_is_stored_as_a_plain_delta() -> None:
    # A varint written longer than it needs (1 as 0x81 0x00): the layout matches, but its
    # number would be written back as one byte, so the writer's check keeps the plain delta.
    keyframe = b"".join(b"\x0a\x39\x0a\x30%02d%s\x10\x81\x00\x18%c\x20\x05" % (i, b"x" * 46, i) for i in range(100))
    body = keyframe.replace(b"\x10\x81\x00", b"\x10\x82\x00")
    assert statsdelta.Keyframe(keyframe).encode(body) is not None  # aligned: only the check refuses it
    delta = bodies.compressor(keyframe).compress(body)
    assert delta[0] not in (bodies.STATS_MARKER, bodies.NESTED_MARKER)
    assert bodies.undelta(delta, keyframe) == body


def test_a_delta_written_before_stats_deltas_still_reads() -> None:
    """The schema-6 encoding, made here as that writer made it (zstd level 3, the keyframe
    as raw-content dictionary, content size and checksum in the frame)."""
    keyframe, body = _stats_reply(0), _stats_reply(60)
    assert bodies.undelta(zstd_delta(keyframe, body), keyframe) == body


def zstd_delta(keyframe: bytes, body: bytes) -> bytes:
    dictionary = zstandard.ZstdCompressionDict(keyframe, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=3, dict_data=dictionary, write_content_size=True,
                                    write_checksum=True).compress(body)


DATA = Path(__file__).resolve().parent.parent / "data" / "stats"


def test_a_stats_delta_written_before_nested_splits_still_reads() -> None:
    """A STATS_MARKER delta as the writer made it until 2 Dec 2026 (main at 445f513), three of
    whose entries were split field by field: it reads as the same body, byte for byte."""
    keyframe = (DATA / "legacy-keyframe.bin").read_bytes()
    delta = (DATA / "legacy-delta.bin").read_bytes()
    assert delta[0] == bodies.STATS_MARKER
    body = bodies.undelta(delta, keyframe)
    assert hashlib.sha256(body).hexdigest() == "57d0a5745ffe354098ea8961512542b38cd52c2fd076f3b8c1e3a74be9fd5b5e"


def _replies(path: Path) -> list[bytes]:
    """The replies of benchmarks/real_stats.py's file: a uvarint length, then the bytes."""
    data, i, out = path.read_bytes(), 0, []
    while i < len(data):
        size, i = read_uvarint(data, i)
        out.append(data[i:i + size])
        i += size
    return out


@pytest.mark.parametrize("method", [0, 1], ids=["ListContainerStats", "ListPodSandboxStats"])
def test_a_real_containerds_replies_are_stats_deltas_that_read_back_exactly(method: int) -> None:
    """containerd 1.6's own bytes (benchmarks/real_stats.py, every 10 s; its entries come in
    another order each time), each stored against one keyframe as a writer would. The first
    two replies are left out: containerd has no usage_nano_cores before its second read nor
    the writable layers' usage before its first sync, so their layout is another."""
    replies = _replies(DATA / "containerd-1.6-stats.bin")[method::2][2:]
    keyframe, encoder = replies[0], bodies.compressor(replies[0])
    deltas = [encoder.compress(body) for body in replies[1:]]
    assert [bodies.undelta(delta, keyframe) for delta in deltas] == replies[1:]
    assert sum(delta[0] == bodies.NESTED_MARKER for delta in deltas) * 4 >= len(deltas) * 3
    assert sum(map(len, deltas)) < sum(len(zstd_delta(keyframe, body)) for body in replies[1:])
