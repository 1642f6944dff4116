"""The page shell both reports share: one self-contained HTML file (no network, no CDN). The
data goes in as one JSON block, which the inline script (assets.py) reads and draws as SVG
and tables; a Content-Security-Policy of `default-src 'none'` lets the page load nothing
else, and the inline style and script are allowed by their hashes, not by 'unsafe-inline'."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path
from typing import Any

from cri_proxy.model.errors import ConfigError
from cri_proxy.report.assets import STYLE
from cri_proxy.report.scripts import SCRIPT


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def embed_json(data: Any) -> str:
    """`data` as JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def html_page(title: str, data: dict[str, Any]) -> str:
    """The whole page: `data["kind"]` ("node" or "replay") says which report the script draws."""
    policy = f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; img-src data:"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p id='meta'></p><nav id='nav'></nav></header>"
        "<main id='main'><noscript>This report draws itself with JavaScript.</noscript></main>"
        "<aside id='detail' hidden></aside>"
        f"<script type='application/json' id='report-data'>{embed_json(data)}</script>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def write_page(path: Path, text: str, flag: str = "-o") -> None:
    """Writes the page; ConfigError (one line) when the file cannot be written."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {flag} {path}: {exc.strerror}") from None
