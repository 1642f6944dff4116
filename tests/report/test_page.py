"""cri_proxy/report/page.py: the self-contained shell, its policy and the embedded data."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from cri_proxy.model.errors import ConfigError
from cri_proxy.report.page import embed_json, html_page, write_page
from tests.helpers.browser import page_data


def test_the_data_cannot_close_its_script_element() -> None:
    data = {"message": "</script><script>alert(1)</script><!-- \u2028"}
    text = embed_json(data)
    assert "<" not in text and "\u2028" not in text
    assert json.loads(text) == data


def test_the_policy_loads_nothing_and_allows_exactly_the_inline_style_and_script(tmp_path: Path) -> None:
    page = html_page("t <b>", {"kind": "node", "note": "</script>"})
    policy = re.search(r'http-equiv=\'Content-Security-Policy\' content="([^"]+)"', page)
    assert policy is not None
    rules = dict(rule.strip().split(" ", 1) for rule in policy.group(1).split(";"))
    assert rules["default-src"] == "'none'"
    for tag in ("style", "script"):
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert rules[f"{tag}-src"] == f"'sha256-{digest}'"
    assert "unsafe-inline" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "<title>t &lt;b&gt;</title>" in page
    write_page(tmp_path / "p.html", page)
    assert page_data(tmp_path / "p.html") == {"kind": "node", "note": "</script>"}


def test_an_unwritable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot write -o .*absent/p.html: No such file or directory$"):
        write_page(tmp_path / "absent" / "p.html", "x")
