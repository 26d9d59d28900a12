#!/usr/bin/env python3
"""Take the screenshot of the audit page that docs/report.md shows, from the demo's audit.

Runs `pgarchitect demo --keep-running --no-monitoring`, waits until its stack is up, writes
the page of its audit with the most clusters (`pgarchitect report ID --store DSN --html`),
has headless Chromium draw it, and stops the demo with Ctrl-C (SIGINT).

    python scripts/report_screenshot.py [--out docs/images/report-page.png] [--html FILE]

Needs Debian's `chromium` (scripts/ensure-debian-packages.sh) and the `demo` extra.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DEMO_TIMEOUT = 600.0


def _store_of(demo: subprocess.Popen[str], lines: list[str]) -> str:
    """Read the demo's output until its URL table; the store's DSN from it."""
    assert demo.stdout is not None
    deadline = time.monotonic() + DEMO_TIMEOUT
    store = None
    for line in demo.stdout:
        lines.append(line)
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells[:1] == ["store"] and len(cells) == 2:
            store = cells[1]
        if "Ctrl-C stops it all" in line and store:
            return store
        if time.monotonic() > deadline:
            break
    raise SystemExit("the demo did not come up:\n" + "".join(lines[-30:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "report-page.png")
    parser.add_argument("--html", type=Path, help="also keep the page here")
    parser.add_argument("--size", default="1280,2600", help="window size (default 1280,2600)")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (scripts/ensure-debian-packages.sh)")
    work = Path(tempfile.mkdtemp(prefix="pgarchitect-shot-"))
    demo = subprocess.Popen([sys.executable, "-m", "pgarchitect", "demo", "--keep-running",
                             "--no-monitoring"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    try:
        store = _store_of(demo, lines)
        with psycopg.connect(store) as conn:
            row = conn.execute("SELECT id FROM pgarchitect.audit_run WHERE status = 'succeeded'"
                               " ORDER BY cluster_count DESC, id LIMIT 1").fetchone()
        if row is None:
            raise SystemExit("the demo's store has no succeeded audit")
        page = args.html or work / "audit.html"
        subprocess.run([sys.executable, "-m", "pgarchitect", "report", str(row[0]), "--store",
                        store, "--html", str(page)], check=True, cwd=ROOT, timeout=120)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={work}/p",
                        f"--window-size={args.size}", f"--screenshot={args.out}",
                        page.resolve().as_uri()], check=True, timeout=120,
                       capture_output=True)
        print(f"audit {row[0]} of the demo: page {page}, screenshot {args.out}")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
        shutil.rmtree(work / "p", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
