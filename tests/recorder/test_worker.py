"""The recorder process's start (recorder.worker): how it tunes the garbage collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from cri_proxy.recorder.worker import GC_THRESHOLD, tune_gc

pytestmark = pytest.mark.timeout(30)


def test_the_recorder_process_collects_its_youngest_objects_less_often() -> None:
    """tune_gc (the process's, before its loop): what was loaded at start is set aside and
    the youngest generation waits for GC_THRESHOLD allocations; cycles are still collected."""
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:]) and gc.get_freeze_count() > 0
        ring: list[object] = []
        ring.append(ring)
        alive = weakref.ref(Cycle(ring))
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class Cycle:
    def __init__(self, ring: list[object]) -> None:
        self.me = self
        self.ring = ring
