"""A real browser for the report pages: headless Chromium (Debian's `chromium`) driven over
the DevTools protocol on a pipe (`--remote-debugging-pipe`: no port, nothing to clean up but
the process). `load(page)` opens a file and says what the page did: console errors and
uncaught exceptions, every request it made, a screenshot, and what the script drew.

Tests skip when chromium is absent, unless CRI_PROXY_REQUIRE_CHROMIUM=1 (CI sets it).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
         "--remote-debugging-pipe", "--window-size=1280,900")  # fmt: skip
_TIMEOUT_S = 60.0


def chromium() -> str:
    """The chromium binary, or skip (fail when CI requires it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CRI_PROXY_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required (CRI_PROXY_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("needs headless Chromium (Debian's chromium package); CI installs it")
    return found


@dataclass
class Loaded:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, CSP refusals
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    screenshot: bytes = b""  # PNG
    drawn: dict[str, Any] = field(default_factory=dict)  # what `probe` returned


class _Pipe:
    """DevTools messages: NUL-terminated JSON, commands on fd 3, answers and events on fd 4."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc, self._out, self._in = proc, os.fdopen(to_browser, "wb"), os.fdopen(from_browser, "rb")
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self._buffer = b""

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        self._out.flush()
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = self._in.read1(1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))


# Run in the page after it loaded: what the script drew (for the tests to check), and how
# long after the navigation began (for the benchmark's figures; no test asserts a time).
PROBE = """JSON.stringify({sections: [...document.querySelectorAll('main section')].map(s => s.id),
  svgs: document.querySelectorAll('svg').length, rects: document.querySelectorAll('svg rect').length,
  paths: document.querySelectorAll('svg path').length, rows: document.querySelectorAll('tbody tr').length,
  text: document.body.innerText.slice(0, 20000), drawn_ms: Math.round(performance.now())})"""


def load(page: Path, *, click: str | None = None) -> Loaded:
    """Opens `page` in headless Chromium; `click` is a CSS selector clicked after load
    (its effect is in `drawn["after_click"]`: the detail panel's text)."""
    binary = chromium()
    profile = tempfile.mkdtemp(prefix="cri-proxy-chromium-")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=lambda: _move_fds(to_r, from_w),
                            start_new_session=True)  # fmt: skip
    os.close(to_r)
    os.close(from_w)
    pipe = _Pipe(proc, to_w, from_r)
    killer = threading.Timer(_TIMEOUT_S, proc.kill)  # a hung browser fails the test, not the suite
    killer.start()
    try:
        return _drive(pipe, page, click)
    finally:
        killer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its renderer and GPU children too: its own session
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _move_fds(to_r: int, from_w: int) -> None:
    """In the child: the pipe chromium reads on fd 3, the one it writes on fd 4 (copied above
    10 first, so neither end can be overwritten by the other's move)."""
    high_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
    high_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
    os.dup2(high_r, 3)
    os.dup2(high_w, 4)


def _drive(pipe: _Pipe, page: Path, click: str | None) -> Loaded:
    target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.send(f"{domain}.enable", session=session)
    pipe.send("Emulation.setDeviceMetricsOverride",
              {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)  # fmt: skip
    pipe.events.clear()
    pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    pipe.wait_event("Page.loadEventFired")
    loaded = Loaded()
    drawn = pipe.send("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)
    loaded.drawn = json.loads(drawn["result"]["value"])
    if click is not None:
        script = (f"(() => {{ const e = document.querySelector({json.dumps(click)}); if (!e) return 'nothing to click';"
                  " e.dispatchEvent(new MouseEvent('click', {bubbles: true})); return document.getElementById('detail').innerText; })()")  # fmt: skip
        loaded.drawn["after_click"] = pipe.send("Runtime.evaluate", {"expression": script, "returnByValue": True},
                                                session=session)["result"]["value"]  # fmt: skip
    shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
    loaded.screenshot = base64.b64decode(shot["data"])
    pipe.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flushes the events so far
    for event in pipe.events:
        _collect(loaded, event)
    return loaded


def _collect(loaded: Loaded, event: dict[str, Any]) -> None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        loaded.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
        loaded.errors.append(json.dumps(params.get("args", []))[:500])
    elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
        loaded.errors.append(params["entry"].get("text", "")[:500])
    elif method == "Network.requestWillBeSent":
        loaded.requests.append(params.get("request", {}).get("url", ""))


def pixels(png: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and the distinct colours of an 8-bit RGB or RGBA PNG (what Chromium writes)."""
    width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
    if depth != 8 or colour not in (2, 6):
        raise ValueError(f"unexpected PNG: depth {depth}, colour type {colour}")
    chunks, at = [], 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        if kind == b"IDAT":
            chunks.append(png[at + 8:at + 8 + length])
        at += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        row = _unfilter(line[0], bytearray(line[1:]), previous, bpp)
        if y % 4 == 0:  # every fourth row is plenty to tell a blank page from a drawn one
            colours.update(bytes(row[x:x + 3]) for x in range(0, stride, bpp * 2))
        previous = row
    return width, height, colours


def _unfilter(kind: int, row: bytearray, prev: bytearray, bpp: int) -> bytearray:
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = prev[i]
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = prev[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
    return row


def page_data(page: Path) -> dict[str, Any]:
    """The JSON block a report page embeds (what its script draws)."""
    text = page.read_text(encoding="utf-8")
    start = text.index("<script type='application/json' id='report-data'>")
    start = text.index(">", start) + 1
    return dict(json.loads(text[start:text.index("</script>", start)]))
