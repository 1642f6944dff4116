"""cri_proxy/report/scripts.py (and assets.py): the page's script, in a real browser. Headless
Chromium loads the report of a recording made through the proxy (`cri-proxy demo`) and of the
oldest golden recording: no console error, no request for anything but the file itself,
every section drawn, a screenshot that is not blank, and a click that shows a call's JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_proxy.report.build import write_report
from cri_proxy.store.selection import Selection
from tests.helpers.browser import chromium, load, page_data, pixels
from tests.helpers.cli import run_cli
from tests.helpers.recordings import GOLDEN

pytestmark = pytest.mark.timeout(120)
SECTIONS = ["rates", "latency", "problems", "errors", "probes", "relists", "slowest", "pods"]


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    chromium()
    folder = tmp_path_factory.mktemp("demo")
    made = run_cli("demo", "--db", str(folder / "demo.db"), cwd=folder)
    assert made.returncode == 0, made.stderr
    write_report(folder / "demo.db", folder / "demo.html", Selection())
    yield folder / "demo.html"


def _only_the_file(page: Path, requests: list[str]) -> None:
    assert requests and all(url == page.resolve().as_uri() or url.startswith("data:") for url in requests), requests


def test_the_demo_report_in_a_browser(demo_page: Path) -> None:
    loaded = load(demo_page)
    assert loaded.errors == []
    _only_the_file(demo_page, loaded.requests)
    assert loaded.drawn["sections"] == SECTIONS
    assert loaded.drawn["paths"] > 10 and loaded.drawn["rects"] > 50  # lines, bars, waterfall
    text = loaded.drawn["text"]
    assert "exit 3" in text  # the demo's failing probe, among the top errors
    assert "NOT_FOUND" in text
    width, height, colours = pixels(loaded.screenshot)
    assert (width, height) == (1280, 900) and len(colours) > 20


def test_a_click_on_a_call_shows_its_request_and_response(demo_page: Path) -> None:
    data = page_data(demo_page)
    probe = data["probes"][0]["examples"][0]
    loaded = load(demo_page, click=f"#probes a.call[href='#call-{probe}']")
    shown = loaded.drawn["after_click"]
    assert loaded.errors == []
    assert f"call {probe} ExecSync" in shown and "exit code\t3" in shown
    assert '"cmd": [' in shown and '"exit_code": 3' in shown  # the stored JSON, pretty-printed


def test_the_oldest_golden_recording_in_a_browser(tmp_path: Path) -> None:
    chromium()
    write_report(GOLDEN[0], tmp_path / "old.html", Selection())
    loaded = load(tmp_path / "old.html")
    assert loaded.errors == []
    _only_the_file(tmp_path / "old.html", loaded.requests)
    assert loaded.drawn["sections"] == SECTIONS
