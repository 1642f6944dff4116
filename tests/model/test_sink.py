"""cri_proxy/model/sink.py: where finished calls go; MemorySink keeps them in order."""

from __future__ import annotations

from cri_proxy.model.call import RecordedCall
from cri_proxy.model.sink import MemorySink


def test_memory_sink_keeps_calls_in_order() -> None:
    sink = MemorySink()
    calls = [RecordedCall(conn_id=1, stream_id=2 * i + 1, started_at=float(i), path="/x.Y/Z") for i in range(3)]
    for c in calls:
        sink.submit(c)
    assert sink.calls == calls
