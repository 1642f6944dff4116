"""How `cri-proxy report` scales: writes a synthetic recording of N calls (big_recording.py)
unless it exists, times the report of it as a process of its own, and says the page's size
and, when Debian's chromium is installed, how long headless Chromium takes to load and draw
it (and whether it logged any error or asked for anything outside the file).

    .venv/bin/python benchmarks/report_scale.py /tmp/big.db --calls 1000000
The bars (issue 14): under a minute, under 10 MB, no console error, no request but the file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import big_recording  # noqa: E402

TIME_BAR_S, SIZE_BAR_MB = 60.0, 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()
    if not args.db.exists():
        started = time.monotonic()
        made, _ = big_recording.build(args.db, args.calls, pods=20, seed=7)
        print(f"wrote {made} calls to {args.db} in {time.monotonic() - started:.1f} s")
    out = Path(tempfile.mkdtemp(prefix="cri-proxy-report-")) / "report.html"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "cri_proxy", "report", str(args.db), "-o", str(out)], check=True, cwd=ROOT)
    seconds = time.monotonic() - started
    size_mb = out.stat().st_size / 1e6
    print(f"report: {seconds:.1f} s (bar {TIME_BAR_S:.0f} s), {size_mb:.2f} MB (bar {SIZE_BAR_MB:.0f} MB)")
    ok = seconds < TIME_BAR_S and size_mb < SIZE_BAR_MB
    if shutil.which("chromium"):
        from tests.helpers.browser import load

        loaded = load(out)
        print(f"chromium: loaded and drawn {loaded.drawn['drawn_ms']} ms after navigation; "
              f"{len(loaded.errors)} console errors; requests {loaded.requests}")  # fmt: skip
        ok = ok and not loaded.errors and loaded.requests == [out.resolve().as_uri()]
    else:
        print("chromium: not installed (apt-get install -y --no-install-recommends chromium)")
    shutil.rmtree(out.parent, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
