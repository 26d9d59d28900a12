"""DSN masking and cron parsing (pure)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgarchitect.cron import CronError, parse_cron
from pgarchitect.db import MARKER, is_own, mark
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn, mask_dsn
from pgarchitect.log import event
from tests.conftest import drop_database, new_database


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://u:pw@h:5432/db", "postgresql://u:****@h:5432/db"),
    ("postgres://u@h/db", "postgres://u@h/db"),
    ("host=h user=u password=secret dbname=d", "host=h user=u password=**** dbname=d"),
    ("host=h password='se cret' dbname=d", "host=h password=**** dbname=d"),
    ("postgresql://u@h/db?password=abc&sslmode=require",
     "postgresql://u@h/db?password=****&sslmode=require"),
    ("error connecting to postgresql://a:b@c/d: refused",
     "error connecting to postgresql://a:****@c/d: refused"),
])
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


PASSWORD_CHARS = st.characters(
    blacklist_characters="@'", blacklist_categories=("Zs", "Zl", "Zp", "Cc")
)


@given(st.text(alphabet=PASSWORD_CHARS, min_size=3))
def test_password_never_survives_masking(password: str) -> None:
    text = mask_dsn(f"postgresql://user:{password}@host/db")
    assert password not in text.replace("postgresql://user:", "").replace("@host/db", "")


def test_dsn_object_hides_password() -> None:
    d = Dsn("postgresql://u:topsecret@h/db")
    assert "topsecret" not in str(d) and "topsecret" not in repr(d) and "topsecret" not in f"{d}"
    assert "topsecret" not in event("x", dsn=d)
    assert d.reveal().endswith("topsecret@h/db")


def test_weekly_default_schedule() -> None:
    cron = parse_cron("0 2 * * 0")
    now = datetime(2026, 11, 24, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    nxt = cron.next_after(now)
    assert nxt == datetime(2026, 11, 29, 2, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert nxt.weekday() == 6


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("*/15 * * * *", datetime(2026, 1, 1, 10, 7), datetime(2026, 1, 1, 10, 15)),
    ("0 9-17 * * mon-fri", datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 9, 0)),
    ("30 4 1,15 * *", datetime(2026, 2, 16, 0, 0), datetime(2026, 3, 1, 4, 30)),
    ("0 0 29 2 *", datetime(2026, 3, 1, 0, 0), datetime(2028, 2, 29, 0, 0)),
    ("@daily", datetime(2026, 1, 1, 0, 0), datetime(2026, 1, 2, 0, 0)),
])
def test_next_after(expr: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expr).next_after(after) == expected


@pytest.mark.parametrize(
    "expr", ["* * * *", "60 * * * *", "* * 0 * *", "5-1 * * * *", "*/0 * * * *", "x * * * *"]
)
def test_bad_cron(expr: str) -> None:
    with pytest.raises(CronError):
        parse_cron(expr)


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "/* pgarchitect */ SELECT 1",
    "\n  WITH x AS (SELECT 1) SELECT * FROM x",
])
def test_mark_puts_the_marker_first_and_after_the_first_keyword(sql: str) -> None:
    marked = mark(sql)
    first_word = sql.replace(MARKER, "").split()[0]
    assert marked.startswith(f"{MARKER} {first_word} {MARKER} ")
    assert marked.count(MARKER) == 2
    assert is_own(marked) and not is_own(sql.replace(MARKER, ""))


def test_marker_survives_pg_stat_statements(pg_server: PgServer) -> None:
    """On PostgreSQL 18 a leading comment is dropped from the kept text; the second stays."""
    dsn = new_database(pg_server, "marker", extensions=("pg_stat_statements",))
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(mark("SELECT relname FROM pg_class WHERE relname = %s").encode(),
                         ("x",))
            rows = conn.execute(
                "SELECT query FROM pg_stat_statements WHERE query LIKE '%relname FROM pg_class%'"
            ).fetchall()
        assert rows and all(is_own(r[0]) for r in rows)
    finally:
        drop_database(pg_server, dsn)


def test_masking_twice_keeps_the_text_after_the_password() -> None:
    once = f"cannot connect to {Dsn('host=h password=secret')}: refused"
    assert once == "cannot connect to host=h password=****: refused"
    assert mask_dsn(once) == once
