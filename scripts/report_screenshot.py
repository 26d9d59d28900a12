#!/usr/bin/env python3
"""Take the screenshots of the audit page that docs/report.md shows, from the demo's audits.

Runs `pgarchitect demo --keep-running --no-monitoring`, waits until its stack is up, writes
the page of its audit with the most clusters and of its last audit that verified an applied
recommendation (`pgarchitect report ID --store DSN --html`), has headless Chromium draw
them, and stops the demo with Ctrl-C (SIGINT).

    python scripts/report_screenshot.py [--out DIR] [--html DIR]

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


def _excerpt(page: Path, first: str, stop: str) -> Path:
    """The page's head and its sections from `first` up to `stop` (a headless screenshot does
    not scroll to a #fragment)."""
    text = page.read_text()
    head = text[: text.index("<body>") + len("<body>")]
    body = text[text.index(f'<section id="{first}">'): text.index(f'<section id="{stop}">')]
    out = page.with_name(page.stem + f"-{first}.html")
    out.write_text(f"{head}\n{body}\n</body></html>\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images",
                        help="where report-page.png and report-verification.png go")
    parser.add_argument("--html", type=Path, help="also keep the pages in this directory")
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
            first = conn.execute(
                "SELECT id FROM pgarchitect.audit_run WHERE status = 'succeeded'"
                " ORDER BY cluster_count DESC, id LIMIT 1").fetchone()
            verifying = conn.execute(
                "SELECT id FROM pgarchitect.audit_run WHERE status = 'succeeded'"
                " AND jsonb_array_length(report -> 'verifications') > 0"
                " ORDER BY id DESC LIMIT 1").fetchone()
        if first is None:
            raise SystemExit("the demo's store has no succeeded audit")
        args.out.mkdir(parents=True, exist_ok=True)
        pages = args.html or work
        pages.mkdir(parents=True, exist_ok=True)
        shots: list[tuple[int, str, str, tuple[str, str] | None]] = [
            (first[0], "report-page.png", "1280,2600", None)]
        if verifying is not None:  # its verification and workload sections
            shots.append((verifying[0], "report-verification.png", "1280,1250",
                          ("verifications", "not-proposed")))
        for audit_id, name, size, sections in shots:
            page = pages / f"audit-{audit_id}.html"
            subprocess.run([sys.executable, "-m", "pgarchitect", "report", str(audit_id),
                            "--store", store, "--html", str(page)], check=True, cwd=ROOT,
                           timeout=120)
            if sections is not None:
                page = _excerpt(page, *sections)
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={work}/p",
                            f"--window-size={size}", f"--screenshot={args.out / name}",
                            page.resolve().as_uri()], check=True, timeout=120,
                           capture_output=True)
            print(f"audit {audit_id} of the demo: page {page}, screenshot {args.out / name}")
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
