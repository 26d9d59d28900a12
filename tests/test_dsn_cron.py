"""DSN masking, the statement marker, and our use of croniter for `analyzer.schedule`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings, load_settings
from pgarchitect.cron import CronError, check_cron, next_run
from pgarchitect.db import MARKER, is_own, mark
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn, mask_dsn, parse_dsn
from pgarchitect.errors import ConfigError
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
    # libpq's unquoted value runs to white space, a backslash escaping the next character.
    ("host=h password=Secret\\ Q dbname=d", "host=h password=**** dbname=d"),
    ("host=h password='Secret\\' Q' dbname=d", "host=h password=**** dbname=d"),
    ("host=h password = 'unterminated and more", "host=h password = ****"),
    ("sslpassword=k3y PGPASSWORD=pw", "sslpassword=**** PGPASSWORD=****"),
    # The query form ends at the next parameter or white space: the rest of the line stays.
    ("postgresql://h/db?sslmode=require&password=p%40ss and then more text",
     "postgresql://h/db?sslmode=require&password=**** and then more text"),
    ("cannot use 'postgresql://u:pw@h1:5432,h2:5433/db' (quoted)",
     "cannot use 'postgresql://u:****@h1:5432,h2:5433/db' (quoted)"),
    # Other settings' URLs: any scheme's userinfo.
    ("alertmanager_url: http://am:s3cret@am.internal:9093/",
     "alertmanager_url: http://am:****@am.internal:9093/"),
    ("public_url: https://pga.example/?password=x1&y=2",
     "public_url: https://pga.example/?password=****&y=2"),
    ("{'password': 'abc', \"password\": \"d\\\"e\"}", "{'password': ****, \"password\": ****}"),
    ("no secret: postgresql://u@h:5432/db, host=h port=1",
     "no secret: postgresql://u@h:5432/db, host=h port=1"),
])
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked
    assert mask_dsn(masked) == masked


PASSWORD_CHARS = st.characters(
    blacklist_characters="@'", blacklist_categories=("Zs", "Zl", "Zp", "Cc")
)


@given(st.text(alphabet=PASSWORD_CHARS, min_size=3))
def test_password_never_survives_masking(password: str) -> None:
    text = mask_dsn(f"postgresql://user:{password}@host/db")
    assert password not in text.replace("postgresql://user:", "").replace("@host/db", "")


def _kv_escaped(password: str) -> str:
    return "".join("\\" + c if c.isspace() or c in "\\'" else c for c in password)


def _kv_quoted(password: str) -> str:
    return "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"


# (how a DSN writes the password, the DSN, what masking leaves), for each DSN form.
FORMS: list[tuple[Callable[[str], str], str, str]] = [
    (lambda p: quote(p, safe=""), "postgresql://mon:{}@db1:5432/app",
     "postgresql://mon:****@db1:5432/app"),
    (lambda p: quote(p, safe=""), "postgres://mon:{}@h1:5432,h2:5433/app?sslmode=require",
     "postgres://mon:****@h1:5432,h2:5433/app?sslmode=require"),
    (lambda p: quote(p, safe=""), "postgresql://mon@db1/app?password={}&sslmode=require",
     "postgresql://mon@db1/app?password=****&sslmode=require"),
    (_kv_escaped, "host=db1 password={} dbname=app", "host=db1 password=**** dbname=app"),
    (_kv_quoted, "host=db1 password={} dbname=app", "host=db1 password=**** dbname=app"),
    (_kv_quoted, "host=db1 password = {}", "host=db1 password = ****"),
]


@given(st.sampled_from(FORMS), st.text(min_size=1, max_size=30).filter(
    lambda p: not p.startswith("****") and "\x00" not in p))
def test_no_password_survives_masking_in_any_dsn_form(
    form: tuple[Callable[[str], str], str, str], password: str
) -> None:
    write, template, masked = form
    dsn = template.format(write(password))
    if not template.startswith("postgres"):  # libpq reads the password back as it was
        assert conninfo_to_dict(dsn)["password"] == password
    line = f"cannot connect to {dsn}: connection refused"
    assert mask_dsn(line) == f"cannot connect to {masked}: connection refused"
    assert mask_dsn(repr(Dsn(dsn))) == repr(Dsn(dsn)) == f"Dsn({masked!r})"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               min_size=2, max_size=20))
def test_a_dsn_that_fails_to_parse_never_shows_its_password(password: str) -> None:
    # Not percent-encoded: libpq refuses many of these and its message may quote the token.
    for dsn in (f"postgresql://mon:{password}%zz@db1/app", f"host=db1 password='{password}%"):
        try:
            parse_dsn(dsn, "store.dsn")
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message
            assert password + "%zz" not in message and f"'{password}%" not in message


def test_argparse_errors_mask_the_dsn_they_echo(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate", "postgresql://u:hunter2@h/db", "host=h password=Sec\\ ret"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: postgresql://u:****@h/db host=h password=****" in err
    assert "hunter2" not in err and "ret" not in err.split("arguments:")[1]


def test_a_bad_percent_encoding_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGARCHITECT_STORE_DSN", "postgresql://u:Pct%zzSecretA@h/db")
    assert main(["migrate", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err == ('pgarchitect: config: store.dsn: invalid DSN: invalid percent-encoded token: '
                   '"****"\n')


def test_dsn_object_hides_password() -> None:
    d = Dsn("postgresql://u:topsecret@h/db")
    assert "topsecret" not in str(d) and "topsecret" not in repr(d) and "topsecret" not in f"{d}"
    assert "topsecret" not in event("x", dsn=d)
    assert d.reveal().endswith("topsecret@h/db")


BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def runs(expression: str, after: datetime, n: int, tz: str = "Europe/Berlin") -> list[str]:
    """The next `n` runs, as ISO strings (they show the UTC offset, so the DST side)."""
    out = []
    for _ in range(n):
        after = next_run(expression, after, tz)
        out.append(after.isoformat())
    return out


def test_weekly_default_schedule_in_the_configured_zone() -> None:
    settings = load_settings(None, {"analyzer": {"timezone": "Europe/Berlin"}}, {})
    nxt = settings.analyzer.next_audit(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    assert nxt == berlin(2026, 11, 29, 2, 0) and nxt.tzinfo == BERLIN
    assert nxt.weekday() == 6  # the default "0 2 * * 0": Sunday 02:00 local time
    # The same schedule in UTC is an hour later in absolute time (Berlin is UTC+1 in winter).
    utc = AnalyzerSettings().next_audit(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))
    assert utc - nxt == timedelta(hours=1)


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("*/15 * * * *", datetime(2026, 1, 1, 10, 7), datetime(2026, 1, 1, 10, 15)),
    ("0 9-17 * * mon-fri", datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 9, 0)),
    ("30 4 1,15 * *", datetime(2026, 2, 16, 0, 0), datetime(2026, 3, 1, 4, 30)),
    ("0 0 29 2 *", datetime(2026, 3, 1, 0, 0), datetime(2028, 2, 29, 0, 0)),
    ("0 0 1 * mon", datetime(2026, 6, 1, 0, 0), datetime(2026, 6, 8, 0, 0)),  # either day field
    ("@daily", datetime(2026, 1, 1, 0, 0), datetime(2026, 1, 2, 0, 0)),
])
def test_next_run(expr: str, after: datetime, expected: datetime) -> None:
    got = next_run(expr, after.replace(tzinfo=UTC), "UTC")
    assert got == expected.replace(tzinfo=UTC)


def test_next_run_across_the_spring_change_in_berlin() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST. A daily 02:30 runs when the clock jumps.
    assert runs("30 2 * * *", berlin(2026, 3, 28, 12, 0), 3) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    # The weekly default: that Sunday's run is at 03:00 CEST, which is 01:00 UTC like the week
    # before's 02:00 CET: exactly seven days of real time apart.
    week = runs("0 2 * * 0", berlin(2026, 3, 21, 12, 0), 3)
    assert week == ["2026-03-22T02:00:00+01:00", "2026-03-29T03:00:00+02:00",
                    "2026-04-05T02:00:00+02:00"]
    gap = datetime.fromisoformat(week[1]) - datetime.fromisoformat(week[0])
    assert gap == timedelta(days=7)


def test_next_run_across_the_autumn_change_in_berlin() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:00-02:59 happens twice.
    # A time the change repeats runs once (the first time), as in Vixie cron...
    assert runs("30 2 * * *", berlin(2026, 10, 24, 12, 0), 3) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
    # ... also when asked from inside the repeated hour, after the first 02:30 has passed.
    assert runs("30 2 * * *", berlin(2026, 10, 25, 2, 15, fold=1), 1) == [
        "2026-10-26T02:30:00+01:00"]
    # An every-hour schedule runs in both: those are two different hours.
    assert runs("*/30 * * * *", berlin(2026, 10, 25, 1, 45), 5) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert runs("@hourly", berlin(2026, 10, 25, 1, 30), 3) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]


def test_next_run_needs_an_aware_moment() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_run("@daily", datetime(2026, 1, 1), "UTC")


@pytest.mark.parametrize(("expr", "message"), [
    ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or one of"),
    ("* * * * * *", "expected 5 fields"),  # croniter's seconds column is not ours
    ("@dayly", "expected 5 fields"),
    ("60 * * * *", "minute field: 60 (out of range)"),
    ("0 25 * * *", "hour field: 25 (out of range)"),
    ("* * 0 * *", "day-of-month field: 0 (out of range)"),
    ("0 0 * 13 *", "month field: 13 (out of range)"),
    ("0 0 * * 8", "day-of-week field: 8 (out of range)"),
    ("*/0 * * * *", "minute field: */0 (step '0' is not acceptable)"),
    ("x * * * *", "minute field: x (not acceptable)"),
    ("0 0 31 2 *", "never fires"),
])
def test_bad_schedule_is_one_line_naming_the_key(
    expr: str, message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        check_cron(expr)
    config = tmp_path / "pgarchitect.yaml"
    config.write_text(f"analyzer:\n  schedule: '{expr}'\n")
    assert main(["migrate", "--config", str(config), "--check-config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"pgarchitect: config: analyzer.schedule: invalid cron expression"
                          f" '{expr}': ")
    assert err.count("\n") == 1 and message in err


def test_good_schedules_are_accepted_as_written() -> None:
    for expr in ("0 2 * * sun", "@weekly", "15 */6 1-7 * 1", " 0 2 * * 0 "):
        assert check_cron(expr) == expr.strip()
        settings = load_settings(None, {"analyzer": {"schedule": expr}}, {})
        assert settings.analyzer.schedule == expr


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
