"""The shared output formats and the --since parser, on plain values."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.query import output
from cri_proxy.query.since import since_text, since_unix
from cri_proxy.query.tail import short_method

pytestmark = pytest.mark.timeout(10)

COLUMNS = ["id", "name", "blob", "ms"]
ROWS = [(1, "short", b"\x00\x01", 1.5), (22, "x" * 100 + "\nnext", None, None)]


def render(fmt: str, **kw: object) -> str:
    out = io.StringIO()
    output.write_rows(out, fmt, COLUMNS, ROWS, **kw)  # type: ignore[arg-type]
    return out.getvalue()


def test_table() -> None:
    lines = render("table").splitlines()
    width = output.MAX_CELL
    assert lines[0] == "id  " + "name".ljust(width) + "  blob        ms"
    assert lines[2] == " 1  " + "short".ljust(width) + "  <2 bytes>  1.5"
    assert lines[3] == "22  " + "x" * (width - 1) + "…"  # trailing blanks dropped; line break never reached
    assert len(lines[3]) == 4 + output.MAX_CELL
    assert render("table", max_cell=None).splitlines()[3].endswith("x\\nnext")


def test_json_jsonl_csv() -> None:
    objs = json.loads(render("json"))
    assert objs[0] == {"id": 1, "name": "short", "blob": {"$base64": True, "encoded": "AAE="}, "ms": 1.5}
    assert objs[1]["name"] == "x" * 100 + "\nnext" and objs[1]["blob"] is None
    assert [json.loads(line) for line in render("jsonl").splitlines()] == objs
    assert list(csv.reader(io.StringIO(render("csv")))) == [
        COLUMNS, ["1", "short", "AAE=", "1.5"], ["22", "x" * 100 + "\nnext", "", ""]]  # fmt: skip


def test_sections() -> None:
    sections: list[output.Section] = [("a", ["x", "y"], [(1, 2)]), ("b", ["y", "z"], [(3, "q")]), ("c", ["x"], [])]
    out = io.StringIO()
    output.write_sections(out, "csv", sections)
    assert out.getvalue().splitlines() == ["section,x,y,z", "a,1,2,", "b,,3,q"]
    out = io.StringIO()
    output.write_sections(out, "table", sections)
    assert out.getvalue() == "a:\nx  y\n-  -\n1  2\n\nb:\ny  z\n-  -\n3  q\n\nc:\n  (none)\n"
    out = io.StringIO()
    output.write_sections(out, "json", sections)
    assert json.loads(out.getvalue()) == {"a": [{"x": 1, "y": 2}], "b": [{"y": 3, "z": "q"}], "c": []}


def test_since() -> None:
    now = 1_800_000_000.0
    assert since_unix("90", now) == now - 90
    assert since_unix("5m", now) == now - 300
    assert since_unix("1.5h", now) == now - 5400
    assert since_unix("2d", now) == now - 172800
    assert since_text("2027-01-15T08:00:00Z") == "2027-01-15 08:00:00.000"
    assert since_text("2027-01-15 08:00") == "2027-01-15 08:00:00.000"
    with pytest.raises(ConfigError):
        since_unix("yesterday")


def test_short_method() -> None:
    assert short_method("runtime.v1.RuntimeService", "ListContainers") == "v1.RuntimeService/ListContainers"
    assert short_method("runtime.v1alpha2.ImageService", "PullImage") == "v1alpha2.ImageService/PullImage"
    assert short_method("containerd.services.version.v1.Version", "Version") == "containerd.services.version.v1.Version/Version"
