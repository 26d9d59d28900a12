"""Writes benchmark figures into docs/benchmarks.md, one marked section per benchmark."""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here is written by a script in `bench/` (run them all with `make bench`), always
as a ratio against a baseline measured in the same run on the same machine. Machines here are
shared and noisy; the test suite asserts no timings, the bars are checked here.
"""

# The baseline every snapshot figure is a ratio of: the view without texts, as the tool reads it.
BARE = "/* pgarchitect */ SELECT * FROM pg_stat_statements(showtext => false)"


def median_seconds(fn: Callable[[], object], runs: int = 5) -> float:
    """The median wall time of `runs` calls of `fn`."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line describing where the figures were measured."""
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def write_figures(name: str, title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Print and write the section `name`: a table of (what, figure, compared with) rows."""
    lines = [f"## {title}", "", "| what | figure | compared with |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(lines)
    print(text)
    write_section(name, text)


def write_section(name: str, markdown: str) -> Path:
    """Replace (or append) the section `name` of docs/benchmarks.md with `markdown`."""
    text = DOC.read_text() if DOC.exists() else HEADER
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n\n_Measured on {machine()}._\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return DOC
