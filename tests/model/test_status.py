"""The status names and the one failure rule: Python and the SQL views agree."""

from __future__ import annotations

import itertools
import re
import sqlite3

import grpc
import pytest

from cri_proxy.model.status import (
    FAILED_SQL,
    StatusCode,
    failed,
    status_code,
    status_name,
)
from tests.conftest import ROOT

OUTCOMES = ("completed", "cancelled", "connection_closed", "unparsed")
CODES = (None, 0, 1, 2, 4, 5, 12, 14, 16, 99)


def test_names_are_grpcs_own() -> None:
    assert {c.value: c.name for c in StatusCode} == {s.value[0]: s.name for s in grpc.StatusCode}
    assert status_name(5) == "NOT_FOUND" and status_name(None) is None and status_name(99) == "CODE_99"
    assert status_code("not_found") == 5 and status_code("14") == 14
    with pytest.raises(ValueError, match="not a gRPC status"):
        status_code("NOPE")


def test_sql_rule_agrees_with_python_on_every_combination() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE calls (status_code INTEGER, outcome TEXT)")
    conn.executemany("INSERT INTO calls VALUES (?, ?)", list(itertools.product(CODES, OUTCOMES)))
    rows = conn.execute(f"SELECT status_code, outcome, {FAILED_SQL} FROM calls").fetchall()
    assert len(rows) == len(CODES) * len(OUTCOMES)
    for code, outcome, sql_failed in rows:
        assert bool(sql_failed) == failed(outcome, code), (code, outcome)
    # A completed call without grpc-status failed: gRPC clients see an error for it.
    assert failed("completed", None) and not failed("completed", 0)


def test_views_spell_the_rule_one_way() -> None:
    views = (ROOT / "storage" / "views.sql").read_text()
    rule = FAILED_SQL.strip("()")
    mentions = re.findall(r"status_code IS NOT 0[^,;\n]*", views)
    assert mentions, "the views no longer judge failure by status_code"
    for text in mentions:
        assert rule in text.replace("c.", ""), text
