"""The jsonlog tailer against real PostgreSQL 15 and 18 servers, and against crafted files."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from exporter import logtail
from exporter.instrument import BUCKETS
from exporter.logtail import REASONS, LogTailer
from pgarchitect.config import OrmOperation, OrmPathRule, OrmPathSettings
from pgarchitect.demo.embedded import PgServer
from tests.orm.conftest import log_dir
from tests.orm.test_instrument import expected_buckets, sample
from tests.waiting import eventually, eventually_async

RULES = (
    OrmPathRule("^api-orm", "orm"),
    OrmPathRule("^api-thin", "thin"),
    OrmPathRule("^analytics", "analytics"),
)
OPERATIONS = (OrmOperation("numbers.sum", "from generate_series"),)


def settings(directory: Path, state_file: Path | None = None, **kw: Any) -> OrmPathSettings:
    return OrmPathSettings(jsonlog=str(directory),
                           state_file=str(state_file) if state_file else None,
                           poll_interval=0.05, rules=RULES, operations=OPERATIONS, **kw)


def total(reg: CollectorRegistry, datname: str, outcome: str = "ok", **labels: str) -> float:
    """pg_orm_queries_total summed over the label sets matching `labels`."""
    want = {"datname": datname, "outcome": outcome, **labels}
    return sum(s.value for fam in reg.collect() for s in fam.samples
               if s.name == "pg_orm_queries_total"
               and all(s.labels.get(k) == v for k, v in want.items()))


def wait_for(tailer: LogTailer, done: Callable[[], bool]) -> None:
    """Poll the tailer until `done()`; the server's logging collector writes asynchronously."""
    eventually(lambda: (tailer.poll_once(), done())[1], "the tailer to see the expected lines")


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


def run_statements(dsn: str, counts: dict[str, int]) -> None:
    """`counts[app]` statements per application_name, mixing drivers and protocols."""

    async def through_asyncpg(app: str, n: int) -> None:
        conn = await asyncpg.connect(dsn, server_settings={"application_name": app})
        try:
            for i in range(n):  # extended protocol: parse/bind/execute, counted once
                await conn.fetchval("SELECT sum(g) FROM generate_series(1, $1) g", i + 1)
        finally:
            await conn.close()

    for app, n in counts.items():
        if app == "analytics":
            with psycopg.connect(dsn, application_name=app, autocommit=True) as conn:
                for i in range(n):
                    conn.execute("SELECT %s::int + 1", (i,))
        else:
            asyncio.run(through_asyncpg(app, n))


def test_counts_per_path_and_buckets(jsonlog_server: PgServer, jsonlog_db: str) -> None:
    reg = CollectorRegistry()
    tailer = LogTailer(settings(log_dir(jsonlog_server)), reg)
    assert tailer.poll_once() == 0  # first poll: start at the end, count no history
    db = dbname(jsonlog_db)
    counts = {"api-orm-7": 5, "api-thin": 7, "analytics": 4, "reporting": 3}
    run_statements(jsonlog_db, counts)
    # The tool's own sessions and marked statements are not the application's.
    with psycopg.connect(jsonlog_db, application_name="pgarchitect-exporter",
                         autocommit=True) as conn:
        for _ in range(5):
            conn.execute("SELECT 1")
    with psycopg.connect(jsonlog_db, application_name="api-thin", autocommit=True) as conn:
        for _ in range(5):
            conn.execute("/* pgarchitect */ SELECT 2")
        for _ in range(2):
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0 FROM generate_series(1, 2)")
    expected = {"orm": 5, "thin": 7, "analytics": 4, "other": 3}
    wait_for(tailer, lambda: total(reg, db, outcome="error") == 2
             and all(total(reg, db, orm_path=p) >= n for p, n in expected.items()))
    tailer.poll_once()
    for path, n in expected.items():
        assert total(reg, db, orm_path=path) == n, path
    assert total(reg, db, orm_path="orm", operation="numbers.sum") == 5
    assert total(reg, db, orm_path="analytics", operation="other") == 4
    assert total(reg, db, outcome="error", orm_path="thin", operation="numbers.sum") == 2
    # Bucket placement equals the durations PostgreSQL logged for those statements.
    logged = logged_durations(log_dir(jsonlog_server), db, "api-thin")
    assert len(logged) == 7
    got = [sample(reg, "pg_orm_query_duration_seconds_bucket", orm_path="thin",
                  operation="numbers.sum", datname=db, le=str(float(le)))
           for le in BUCKETS]
    assert got == expected_buckets(logged)[:-1]
    assert sample(reg, "pg_exporter_logtail_lines_total") > 0
    assert all(sample(reg, "pg_exporter_logtail_errors_total", reason=r) == 0 for r in REASONS)


def logged_durations(directory: Path, db: str, app: str) -> list[float]:
    """Execute/statement durations of `app` in `db`, read straight from the files."""
    out = []
    for f in directory.glob("*.json"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            msg = rec.get("message", "")
            if (rec.get("dbname") == db and rec.get("application_name") == app
                    and msg.startswith("duration: ")
                    and (" execute " in msg or " statement: " in msg)
                    and "pgarchitect" not in msg):
                out.append(float(msg.split()[1]) / 1000)
    return out


def rotate(server: PgServer) -> None:
    """Force a new log file.

    File names carry the second they were opened in, and a rotation within the same second
    reopens the same file: ask again until a new name appears.
    """
    before = {p.name for p in log_dir(server).glob("*.json")}

    def rotated() -> set[str]:
        server.execute("SELECT pg_rotate_logfile()")
        return {p.name for p in log_dir(server).glob("*.json")} - before

    eventually(rotated, "a new log file after pg_rotate_logfile()", interval=0.1)


def test_rotation_loses_and_doubles_nothing(jsonlog_server: PgServer, jsonlog_db: str) -> None:
    reg = CollectorRegistry()
    tailer = LogTailer(settings(log_dir(jsonlog_server)), reg)
    tailer.poll_once()
    db = dbname(jsonlog_db)
    run_statements(jsonlog_db, {"api-thin": 6})
    rotate(jsonlog_server)
    run_statements(jsonlog_db, {"api-thin": 5})
    tailer.poll_once()  # may land mid-way: the rest must follow without doubling
    rotate(jsonlog_server)
    run_statements(jsonlog_db, {"api-thin": 4})
    # Every line in the files first (ground truth), then the tailer caught up with them: one
    # more poll reads to the end of the files, so a doubled line would show now.
    eventually(lambda: len(logged_durations(log_dir(jsonlog_server), db, "api-thin")),
               "the server to log all 15 statements", until=lambda n: n >= 15)
    wait_for(tailer, lambda: total(reg, db, orm_path="thin") >= 15)
    tailer.poll_once()
    assert total(reg, db, orm_path="thin") == 15
    assert len(logged_durations(log_dir(jsonlog_server), db, "api-thin")) == 15
    assert sample(reg, "pg_exporter_logtail_errors_total", reason="truncated") == 0


def test_restart_counts_nothing_twice(jsonlog_server: PgServer, jsonlog_db: str,
                                      tmp_path: Path) -> None:
    state = tmp_path / "logtail.state"
    db = dbname(jsonlog_db)
    first_reg = CollectorRegistry()
    first = LogTailer(settings(log_dir(jsonlog_server), state), first_reg)
    first.poll_once()
    run_statements(jsonlog_db, {"api-orm": 4})
    wait_for(first, lambda: total(first_reg, db) >= 4)
    assert json.loads(state.read_text())["offset"] > 0
    # While "down": more statements, and a rotation.
    probe_reg = CollectorRegistry()
    probe = LogTailer(settings(log_dir(jsonlog_server)), probe_reg)
    probe.poll_once()
    run_statements(jsonlog_db, {"api-orm": 3})
    rotate(jsonlog_server)
    run_statements(jsonlog_db, {"api-orm": 2})
    wait_for(probe, lambda: total(probe_reg, db) >= 5)
    second_reg = CollectorRegistry()
    second = LogTailer(settings(log_dir(jsonlog_server), state), second_reg)
    second.poll_once()
    assert total(first_reg, db) == 4
    assert total(second_reg, db) == 5  # exactly what came after: nothing lost, nothing twice


async def test_run_task_observes_and_cancels(jsonlog_server: PgServer, jsonlog_db: str) -> None:
    reg = CollectorRegistry()
    tailer = LogTailer(settings(log_dir(jsonlog_server)), reg)
    tailer.poll_once()
    task = asyncio.create_task(tailer.run())
    db = dbname(jsonlog_db)
    try:
        await asyncio.to_thread(run_statements, jsonlog_db, {"analytics": 3})
        await eventually_async(lambda: total(reg, db, orm_path="analytics"),
                               "the running tailer to count 3 statements",
                               until=lambda n: n >= 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert total(reg, db, orm_path="analytics") == 3


# --- crafted files: bad lines, partial lines, state problems --------------------------------


def line(app: str = "api-thin", ms: float = 1.5, text: str = "SELECT 1", db: str = "d",
         kind: str = "statement", severity: str = "LOG") -> str:
    message = f"duration: {ms} ms  {kind}: {text}" if kind else f"duration: {ms} ms"
    return json.dumps({"dbname": db, "application_name": app, "error_severity": severity,
                       "message": message, "backend_type": "client backend"}) + "\n"


def write(path: Path, text: str | bytes, mode: str = "a") -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, mode + "b") as fh:
        fh.write(data)


def test_bad_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "postgresql-1.json"
    write(log, "", "w")
    reg = CollectorRegistry()
    tailer = LogTailer(settings(tmp_path), reg)
    tailer.poll_once()
    write(log, line(ms=2.0))
    write(log, "this is not json\n")
    write(log, '{"timestamp": "2024-01-01", "message": "duration: 1\n')  # cut short
    write(log, "[1, 2]\n")
    write(log, b"\xff\xfe garbage bytes\n")
    write(log, line(text="x").replace("duration: 1.5 ms", "duration: lots ms"))
    write(log, json.dumps({"message": 5, "error_severity": "LOG"}) + "\n")
    write(log, line(kind="parse <unnamed>") + line(kind="bind <unnamed>"))  # not counted
    write(log, line(kind="execute S_1", ms=60.0))
    write(log, line(app="pgarchitect-analyzer") + line(text="/* pgarchitect */ SELECT 1"))
    write(log, line(kind="") + "\n")  # duration without a statement text; an empty line
    write(log, line(ms=0.5)[:40])  # partial: wait for the rest
    assert tailer.poll_once() == 14
    assert total(reg, "d", orm_path="thin") == 3
    write(log, line(ms=0.5)[40:])
    assert tailer.poll_once() == 1
    assert total(reg, "d", orm_path="thin") == 4
    assert sample(reg, "pg_orm_query_duration_seconds_bucket", orm_path="thin",
                  operation="other", datname="d", le="0.05") == 3
    errors = {r: sample(reg, "pg_exporter_logtail_errors_total", reason=r) for r in REASONS}
    assert errors == {"malformed": 3, "truncated": 1, "unparsable": 2, "too_long": 0,
                      "read_error": 0, "state_error": 0}


def test_partial_line_of_a_rotated_file_is_truncated(tmp_path: Path) -> None:
    old = tmp_path / "postgresql-1.json"
    write(old, line(), "w")
    reg = CollectorRegistry()
    tailer = LogTailer(settings(tmp_path), reg)
    tailer.poll_once()
    write(old, line() + line()[:30])
    assert tailer.poll_once() == 1
    new = tmp_path / "postgresql-2.json"
    write(new, line() + line(), "w")
    assert tailer.poll_once() == 2
    assert total(reg, "d") == 3
    assert sample(reg, "pg_exporter_logtail_errors_total", reason="truncated") == 1
    # The old file deleted, the new one keeps going.
    old.unlink()
    write(new, line())
    assert tailer.poll_once() == 1
    assert total(reg, "d") == 4


def test_over_long_line_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logtail, "CHUNK", 64)
    monkeypatch.setattr(logtail, "MAX_LINE", 256)
    log = tmp_path / "a.json"
    write(log, "", "w")
    reg = CollectorRegistry()
    tailer = LogTailer(settings(tmp_path), reg)
    tailer.poll_once()
    write(log, line() + "x" * 1000)
    tailer.poll_once()
    write(log, "y" * 500 + "\n" + line() + line())
    tailer.poll_once()
    assert total(reg, "d") == 3
    assert sample(reg, "pg_exporter_logtail_errors_total", reason="too_long") == 1


def test_unreadable_state_file_starts_at_the_end(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.json", line() * 3, "w")
    state = tmp_path / "state.json"
    state.write_text("{not json")
    reg = CollectorRegistry()
    tailer = LogTailer(settings(logs, state), reg)
    assert tailer.poll_once() == 0
    write(logs / "a.json", line())
    assert tailer.poll_once() == 1
    assert sample(reg, "pg_exporter_logtail_errors_total", reason="state_error") == 1
    assert json.loads(state.read_text())["offset"] == (logs / "a.json").stat().st_size


def test_missing_directory_is_a_read_error(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    tailer = LogTailer(settings(tmp_path / "nope"), reg)
    assert tailer.poll_once() == 0
    assert tailer.poll_once() == 0
    assert sample(reg, "pg_exporter_logtail_errors_total", reason="read_error") == 2
    (tmp_path / "nope").mkdir()
    write(tmp_path / "nope" / "a.json", line(), "w")
    tailer.poll_once()  # the directory appeared: start at its end
    write(tmp_path / "nope" / "a.json", line())
    assert tailer.poll_once() == 1


def test_default_path_and_skipping_unmatched(tmp_path: Path) -> None:
    log = tmp_path / "a.json"
    write(log, "", "w")
    reg = CollectorRegistry()
    keep = LogTailer(settings(tmp_path), reg)
    skip_reg = CollectorRegistry()
    skip = LogTailer(settings(tmp_path, default_orm_path=""), skip_reg)
    keep.poll_once()
    skip.poll_once()
    write(log, line(app="psql") + line(app=""))
    assert keep.poll_once() == 2
    assert total(reg, "d", orm_path="other") == 2
    assert skip.poll_once() == 2
    assert total(skip_reg, "d") == 0
