"""SIGTERM ends the analyzer service within analyzer.shutdown_timeout whatever the store does."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from pgarchitect.demo.embedded import PgServer
from tests.analyzer.service import store_gone
from tests.conftest import drop_database, new_database

SHUTDOWN = 3.0


def test_sigterm_with_the_store_gone_exits_within_the_bound(pg18: PgServer,
                                                            tmp_path: Path) -> None:
    target = new_database(pg18, "app", extensions=("pg_stat_statements",))
    try:
        with store_gone(tmp_path, "bounded", {"app": target},
                        shutdown_timeout=f"{SHUTDOWN:g}s") as gone:
            s = gone.service
            popen = s.process.popen
            assert popen is not None
            popen.send_signal(signal.SIGTERM)
            try:
                code = popen.wait(timeout=SHUTDOWN + 20)  # the bound, plus a loaded machine
            except subprocess.TimeoutExpired:
                raise AssertionError("still running after SIGTERM\n" + s.process.log_tail()
                                     ) from None
            assert code == 143, s.process.log_tail()
            log = s.log()
            assert "service.stopping" in log
            after = log[log.index("service.stopping"):]
            assert "worker.stopped" not in after  # no restarts once stopping
    finally:
        drop_database(pg18, target)
