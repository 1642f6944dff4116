"""cri_proxy/recorder/bodies.py: the recent bodies of each kind, recognised by their bytes, bounded."""

from __future__ import annotations

import os

from cri_proxy.recorder.bodies import BodyMemo

KIND = ("/runtime.v1.RuntimeService/ListContainers", False)


def test_an_equal_body_gets_what_was_learnt_and_the_kept_bytes() -> None:
    memo: BodyMemo[str] = BodyMemo()
    first = os.urandom(26_000)
    memo.add(KIND, first, "sha-1")
    again = bytes(bytearray(first))  # equal, another object: what the tap makes of the next reply
    found = memo.find(KIND, again)
    assert found is not None and found[1] == "sha-1" and found[0] is first
    assert memo.find(KIND, first[:-1] + b"x") is None  # one byte differs
    assert memo.find(("/runtime.v1.RuntimeService/ListContainers", True), first) is None  # another kind
    assert (memo.hits, memo.misses) == (1, 2)


def test_each_kind_keeps_its_last_few_distinct_bodies() -> None:
    memo: BodyMemo[int] = BodyMemo(per_kind=2)
    for i in range(3):
        memo.add(KIND, b"body %d" % i, i)
    assert memo.find(KIND, b"body 0") is None
    assert memo.find(KIND, b"body 1") == (b"body 1", 1)
    assert memo.find(KIND, b"body 2") == (b"body 2", 2)
    assert memo.bytes == 12


def test_the_memory_is_bounded_whatever_comes() -> None:
    memo: BodyMemo[int] = BodyMemo(max_bytes=1000, max_body_bytes=600, max_kinds=3)
    memo.add(KIND, b"x" * 601, 0)  # too big to keep
    assert memo.find(KIND, b"x" * 601) is None and memo.bytes == 0
    for i in range(10):
        memo.add((f"/m{i}", True), b"%d" % i * 300, i)
        assert memo.bytes <= 1000
    assert memo.find(("/m9", True), b"9" * 300) is not None
    assert memo.find(("/m0", True), b"0" * 300) is None  # the least recently used kinds went first
    memo.add(KIND, b"a" * 600, 1)
    memo.add(KIND, b"b" * 600, 2)  # one kind over the bound on its own keeps its newest only
    assert memo.bytes <= 1000 and memo.find(KIND, b"b" * 600) is not None
    memo.clear()
    assert memo.bytes == 0 and memo.find(KIND, b"b" * 600) is None
