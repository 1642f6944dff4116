"""cri_proxy/h2/table_size.py: the table size an encoder may use, from SETTINGS and their acknowledgements."""

from __future__ import annotations

from cri_proxy.h2.table_size import MAX_PENDING_RUNS, TableSizeLimit


def test_a_raise_counts_at_once_and_a_fall_at_the_acknowledgement() -> None:
    limit = TableSizeLimit()
    assert limit.sent(8192) == 8192  # usable as soon as the encoder has the SETTINGS
    assert limit.acknowledged() == 8192
    assert limit.sent(0) == 8192  # blocks in flight were encoded under 8192
    assert limit.sent(None) == 8192
    assert limit.acknowledged() == 0  # from the acknowledgement on, the encoder obeys 0
    assert limit.acknowledged() == 0  # SETTINGS without a table size change nothing
    assert limit.acknowledged() == 0  # an acknowledgement of nothing (a broken peer) changes nothing


def test_a_flood_of_settings_costs_constant_memory_and_allows_no_less() -> None:
    limit = TableSizeLimit()
    for i in range(100_000):
        limit.sent(i % 5000)
    assert len(limit.pending) == MAX_PENDING_RUNS
    assert limit.allowed == 4999
    for _ in range(100_000):
        limit.acknowledged()
    assert not limit.pending and limit.allowed == 99_999 % 5000


def test_latest_is_the_last_limit_sent_acknowledged_or_not() -> None:
    limit = TableSizeLimit()
    assert limit.latest == 4096
    limit.sent(1024)
    limit.sent(None)
    assert limit.latest == 1024 and limit.allowed == 4096  # the client may still use 4096
    limit.sent(0)
    assert limit.latest == 0
    limit.acknowledged()
    limit.acknowledged()
    limit.acknowledged()
    assert limit.latest == 0 and limit.allowed == 0
