"""`pgarchitect exporter` as a process: start-up check, serving, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

from pgarchitect.demo.embedded import free_port
from tests.waiting import eventually


def test_unreachable_target_at_start_is_one_line() -> None:
    dsn = "postgresql://monitor:hunter2@127.0.0.1:1/app"
    # In the environment: a password given as a flag adds a warning line (docs/security.md).
    proc = subprocess.run([sys.executable, "-m", "pgarchitect", "exporter"],
                          env={**os.environ, "PGARCHITECT_DSN": dsn},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "cannot connect to target app" in line
    assert "hunter2" not in line and "****" in line


def test_serves_metrics_and_stops_on_sigterm(target_dsn: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgarchitect", "exporter", "--dsn", f"app={target_dsn}",
         "--listen", f"127.0.0.1:{port}", "--min-refresh-interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def metrics() -> str:
        assert proc.poll() is None, f"the exporter exited with {proc.returncode} before serving"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    try:
        body = eventually(metrics, "the exporter to serve /metrics", retry_on=(OSError,),
                          interval=0.1)
        assert 'pg_up{target="app"} 1.0' in body
        assert 'pg_exporter_collector_up{collector="statements",target="app"} 1.0' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "exporter.listening" in err
