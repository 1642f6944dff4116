"""`cri-proxy datasette-metadata`: the metadata made from storage/README.md, on stdout, for
the database name datasette serves the file under (tests/store/test_datasette.py serves it)."""

from __future__ import annotations

import json

import pytest

from cri_proxy.store.datasette import metadata
from tests.helpers.cli import run_cli

pytestmark = pytest.mark.timeout(30)


def test_prints_the_metadata_for_the_named_database() -> None:
    default, named = run_cli("datasette-metadata"), run_cli("datasette-metadata", "--database", "node-a")
    assert default.returncode == named.returncode == 0
    assert json.loads(default.stdout) == metadata("calls")
    assert list(json.loads(named.stdout)["databases"]) == ["node-a"]
    assert "datasette-metadata" in run_cli("-h").stdout
