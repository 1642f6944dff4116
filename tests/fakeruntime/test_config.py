"""cri_proxy/fakeruntime/config.py: the fake runtime's options are checked when made."""

from __future__ import annotations

import re

import pytest

from cri_proxy.fakeruntime.config import FakeRuntimeOptions, ServicerBase
from cri_proxy.fakeruntime.state import RuntimeState


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"api": "v2"}, "api must be v1, v1alpha2 or both, not 'v2'"),
    ({"cgroup_driver": "none"}, "cgroup_driver must be systemd or cgroupfs, not 'none'"),
    ({"stream_chunk_size": 0}, "stream_chunk_size must be at least 1"),
])
def test_bad_options_are_refused(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        FakeRuntimeOptions(**kwargs)  # type: ignore[arg-type]


def test_a_streaming_port_is_picked_once_and_urls_are_single_use() -> None:
    options = FakeRuntimeOptions()
    assert 30000 <= options.streaming_port < 60000
    assert FakeRuntimeOptions(streaming_port=1234).streaming_port == 1234
    servicer = ServicerBase(RuntimeState(), options, "v1")
    first, second = servicer.streaming_url("exec"), servicer.streaming_url("exec")
    assert first.startswith(f"http://127.0.0.1:{options.streaming_port}/exec/") and first != second
