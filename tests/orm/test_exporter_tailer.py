"""The jsonlog tailer inside the exporter: its histograms appear on the exporter's /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pgarchitect.demo.embedded import PgServer
from tests.exporter.conftest import Samples, running_exporter, settings_for
from tests.orm.conftest import log_dir
from tests.orm.test_logtail import dbname, run_statements
from tests.waiting import eventually_async


async def test_exporter_serves_tailer_histograms(
    jsonlog_server: PgServer, jsonlog_db: str, tmp_path: Path
) -> None:
    state = tmp_path / "logtail.state"
    settings = settings_for(
        {"app": jsonlog_db},
        orm_paths={
            "jsonlog": str(log_dir(jsonlog_server)),
            "poll_interval": "50ms",
            "state_file": str(state),
            "rules": [{"application_name": "^api-thin", "orm_path": "thin"},
                      {"application_name": "^analytics", "orm_path": "analytics"}],
            "operations": [{"name": "numbers.sum", "statement": "from generate_series"}],
        },
    )
    db = dbname(jsonlog_db)

    def counts(samples: Samples) -> tuple[float, float]:
        """Statements counted for the thin path (numbers.sum) and for analytics."""
        thin = samples.get("pg_orm_query_duration_seconds_count", orm_path="thin",
                           datname=db, operation="numbers.sum")
        analytics = samples.get("pg_orm_query_duration_seconds_count",
                                orm_path="analytics", datname=db)
        return sum(v for _, v in thin), sum(v for _, v in analytics)

    async with running_exporter(settings) as exporter:
        # The tailer's first poll starts at the end of what the server wrote before and saves
        # that position: once the state file exists, what follows is counted.
        await eventually_async(state.exists, "the tailer's first poll (its state file)")
        await asyncio.to_thread(run_statements, jsonlog_db, {"api-thin": 4, "analytics": 2})
        samples = await eventually_async(
            exporter.samples, "the tailer's counts on /metrics",
            until=lambda got: counts(got)[0] >= 4 and counts(got)[1] >= 2, interval=0.1)
        assert counts(samples) == (4, 2)
        # The exporter's own metrics are still there, in the same exposition.
        assert samples.value("pg_up", target="app") == 1
        # The exporter's own statements (application_name pgarchitect-exporter) are not counted.
        assert not samples.get("pg_orm_query_duration_seconds_count", orm_path="other",
                               datname=db)
