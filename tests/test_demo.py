"""`pgarchitect demo` end to end: prints its table, exits 0, leaves no server running."""

from __future__ import annotations

import re
import signal
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


def test_demo_ctrl_c_stops_the_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgarchitect", "demo", "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    datadir = None
    try:
        for line in proc.stdout:
            m = re.search(r"data in (\S+)\)", line)
            if m:
                datadir = m.group(1)
            if line.lstrip().startswith("workload:"):
                break
        assert datadir is not None
        assert _postgres_pids_for(datadir), "the demo server should be running now"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not Path(datadir).exists()
    assert _postgres_pids_for(datadir) == []
