"""Fixtures shared by the recorder's tests."""

from __future__ import annotations

import pytest

from tests.helpers.tapwire import Wire


@pytest.fixture(params=[("fast", "frames"), ("reference", "frames"), ("fast", "bytes"), ("fast", "chunks")],
                ids=lambda p: "-".join(p))
def wire(request: pytest.FixtureRequest) -> Wire:
    return Wire(request.param[0], feed=request.param[1])
