"""SIGTERM ends the analyzer service within analyzer.shutdown_timeout whatever the store does."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.analyzer.service import analyzer
from tests.conftest import drop_database, new_database
from tests.monitoring.stack import free_port
from tests.waiting import eventually

SHUTDOWN = 3.0


def test_sigterm_with_the_store_gone_exits_within_the_bound(pg18: PgServer,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "store"
    port = str(free_port())
    target = new_database(pg18, "app", extensions=("pg_stat_statements",))
    try:
        with embedded_postgres(18, directory=data, settings={"port": port}) as server:
            store = server.create_database("store")
            migrate(Dsn(store))
            service = contextlib.ExitStack()
            s = service.enter_context(analyzer(tmp_path, "bounded", store, {"app": target},
                                               shutdown_timeout=f"{SHUTDOWN:g}s"))
        with service:  # the store is stopped now
            eventually(lambda: s.request("GET", "/readyz")[0] == 503, "/readyz to say not ready")
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
