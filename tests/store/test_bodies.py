"""cri_proxy/store/bodies.py: a delta decodes with its keyframe to the exact bytes, and with
any other bytes fails loudly instead of giving wrong ones."""

from __future__ import annotations

import random

import pytest

from cri_proxy.model.errors import StorageError
from cri_proxy.store import bodies


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
