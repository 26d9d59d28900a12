"""`pgarchitect demo` end to end: prints its table, exits 0, leaves no server running."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def _postgres_pids_for(directory: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and directory in cmdline:
            pids.append(int(proc.name))
    return pids


def test_demo_prints_top_statements_and_cleans_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pgarchitect", "demo", "--seconds", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "Top 10 statements by total time" in out
    assert re.search(r"calls\s+total ms\s+mean ms\s+rows\s+query", out)
    assert "FROM behavior_logs WHERE user_id" in out
    m = re.search(r"data in (\S+)\)", out)
    assert m, out
    datadir = m.group(1)
    assert not Path(datadir).exists()
    assert _postgres_pids_for(datadir) == []
