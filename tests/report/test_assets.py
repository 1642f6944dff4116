"""cri_proxy/report/assets.py: the style and script every page inlines ask for nothing
outside the page (what they draw is tested in a browser: test_scripts.py)."""

from __future__ import annotations

import re

from cri_proxy.report.assets import COMMON_SCRIPT, STYLE
from cri_proxy.report.scripts import SCRIPT

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, never fetched


def test_no_url_fetch_or_import() -> None:
    for text in (STYLE, SCRIPT):
        assert re.findall(r"[a-z]+://\S+", text.replace(SVG_NAMESPACE, "")) == []
        for word in ("fetch(", "XMLHttpRequest", "import(", "url(", "@import", "WebSocket", "eval(", "innerHTML"):
            assert word not in text
    assert SCRIPT.startswith(COMMON_SCRIPT)  # one shared part, then each report's own
