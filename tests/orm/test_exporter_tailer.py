"""The jsonlog tailer inside the exporter: its histograms appear on the exporter's /metrics."""

from __future__ import annotations

import asyncio
import time

from pgarchitect.demo.embedded import PgServer
from tests.exporter.conftest import running_exporter, settings_for
from tests.orm.conftest import log_dir
from tests.orm.test_logtail import WAIT, dbname, run_statements


async def test_exporter_serves_tailer_histograms(
    jsonlog_server: PgServer, jsonlog_db: str
) -> None:
    settings = settings_for(
        {"app": jsonlog_db},
        orm_paths={
            "jsonlog": str(log_dir(jsonlog_server)),
            "poll_interval": "50ms",
            "rules": [{"application_name": "^api-thin", "orm_path": "thin"},
                      {"application_name": "^analytics", "orm_path": "analytics"}],
            "operations": [{"name": "numbers.sum", "statement": "from generate_series"}],
        },
    )
    db = dbname(jsonlog_db)
    async with running_exporter(settings) as exporter:
        # Give the tailer a first poll so it starts at the end of what the server wrote before.
        await asyncio.sleep(0.3)
        await asyncio.to_thread(run_statements, jsonlog_db, {"api-thin": 4, "analytics": 2})
        deadline = time.monotonic() + WAIT
        while True:
            samples = await exporter.samples()
            thin = samples.get("pg_orm_query_duration_seconds_count", orm_path="thin",
                               datname=db, operation="numbers.sum")
            analytics = samples.get("pg_orm_query_duration_seconds_count",
                                    orm_path="analytics", datname=db)
            if thin and analytics and thin[0][1] >= 4 and sum(v for _, v in analytics) >= 2:
                break
            assert time.monotonic() < deadline, "tailer metrics did not reach /metrics"
            await asyncio.sleep(0.1)
        assert thin[0][1] == 4
        assert sum(v for _, v in analytics) == 2
        # The exporter's own metrics are still there, in the same exposition.
        assert samples.value("pg_up", target="app") == 1
        # The exporter's own statements (application_name pgarchitect-exporter) are not counted.
        assert not samples.get("pg_orm_query_duration_seconds_count", orm_path="other",
                               datname=db)
