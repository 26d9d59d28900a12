"""`pgarchitect advise` on real servers -- PostgreSQL 15 (hypopg) and 18 (a rolled-back
transaction, chosen with --validation transaction) -- each writing a real jsonlog: statements
as arguments, a file, the server's own log with its bind parameters, and bad input; plus the
log formats (jsonlog, stderr, csvlog) on crafted lines as PostgreSQL writes them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from analyzer.advise.inputs import from_log, split
from analyzer.advise.logs import read_log
from analyzer.recommend.parameters import bind_values
from pgarchitect.cli import main
from pgarchitect.demo.embedded import PgServer, embedded_postgres
from pgarchitect.errors import ServerUnavailable
from tests.analyzer.test_shapes import _shapes_db
from tests.conftest import PG_VERSIONS, drop_database
from tests.waiting import eventually

JSONLOG = {
    "logging_collector": "on",
    "log_destination": "jsonlog",
    "log_directory": "log",
    "log_min_duration_statement": "0",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    "lc_messages": "C",
}
NEEDS = "SELECT * FROM orders WHERE customer_id = 42"
COVERED = "SELECT * FROM orders WHERE id = 7"


# -- log formats (pure) -------------------------------------------------------------------
def test_parameters_of_a_detail_line() -> None:
    assert bind_values("Parameters: $1 = '42', $2 = 'it''s, $3 = ''x''', $3 = NULL") == (
        "42", "it's, $3 = 'x'", None)
    assert bind_values("parameters: $1 = '42'") == ("42",)  # as PostgreSQL 15 writes it
    assert bind_values("Parameters: $1 = '2026-12-03...'") is None  # cut: not trusted
    assert bind_values("Parameters: $1 = '4") is None
    assert bind_values("some other detail") is None


def test_jsonlog_stderr_and_csvlog_give_the_same_statements() -> None:
    jsonlog = "\n".join(json.dumps(r) for r in (
        {"error_severity": "LOG", "message": "duration: 0.1 ms  statement: BEGIN"},
        {"error_severity": "LOG", "message": "duration: 0.2 ms  parse <unnamed>: "
                                             "SELECT * FROM t WHERE a = $1"},
        {"error_severity": "LOG", "message": "duration: 3.5 ms  execute <unnamed>: "
                                             "SELECT * FROM t WHERE a = $1",
         "detail": "Parameters: $1 = '42'"},
        {"error_severity": "ERROR", "message": "relation \"x\" does not exist",
         "statement": "SELECT * FROM x"},
        {"error_severity": "LOG", "message": "statement: /* pgarchitect */ SELECT 1"},
    ))
    stderr = (
        "2026-12-03 09:00:00.001 UTC [101] LOG:  duration: 0.1 ms  statement: BEGIN\n"
        "2026-12-03 09:00:00.002 UTC [101] LOG:  duration: 3.5 ms  execute <unnamed>: "
        "SELECT *\n\tFROM t WHERE a = $1\n"
        "2026-12-03 09:00:00.002 UTC [101] DETAIL:  Parameters: $1 = '42'\n"
        "2026-12-03 09:00:00.003 UTC [102] ERROR:  relation \"x\" does not exist\n"
        "2026-12-03 09:00:00.003 UTC [102] STATEMENT:  SELECT * FROM x\n")
    head = '2026-12-03 09:00:00.002 UTC,"app","shop",101,"[local]",1,1,"SELECT",' \
           '2026-12-03 09:00:00 UTC,3/4,0,'
    csvlog = (head + 'LOG,00000,"duration: 3.5 ms  execute <unnamed>: SELECT * FROM t '
              'WHERE a = $1","Parameters: $1 = \'42\'",,,,,,,,"psql","client backend",,0\n'
              + head + 'LOG,00000,"statement: COMMIT",,,,,,,,,"psql","client backend",,0\n')
    for text in (jsonlog, stderr, csvlog):
        given = from_log(read_log(text))
        assert [" ".join(s.text.split()) for s in given.statements] == [
            "SELECT * FROM t WHERE a = $1"], text[:40]
        assert list(given.parameters.values()) == [(("42",),)], text[:40]


def test_a_file_splits_into_its_statements() -> None:
    stmts = split("SELECT 1;\n-- a comment\nUPDATE t SET a = 1 WHERE b = 2;\nSET x = 1", "f")
    assert [(s.text, s.query) for s in stmts] == [
        ("SELECT 1", True), ("UPDATE t SET a = 1 WHERE b = 2", True),
        ("SET x = 1", False)]


# -- real servers ---------------------------------------------------------------------------
@pytest.fixture(scope="module", params=PG_VERSIONS, ids=lambda v: f"pg{v}")
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[PgServer, str]]:
    """A server writing jsonlog, with the shapes database (hypopg on 15)."""
    try:
        with embedded_postgres(request.param, settings=JSONLOG) as server:
            dsn = _shapes_db(server)
            yield server, dsn
            drop_database(server, dsn)
    except ServerUnavailable as exc:
        pytest.fail(f"PostgreSQL {request.param} is required: {exc}", pytrace=False)


def _validation(server: PgServer) -> list[str]:
    return [] if server.version == 15 else ["--validation", "transaction"]


def _indexes(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
                           ).fetchone()
    assert row is not None
    return int(row[0])


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, object]]:
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(out.out)


def test_statements_as_arguments(logged: tuple[PgServer, str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    server, dsn = logged
    before = _indexes(dsn)
    code, report = _json(capsys, ["advise", NEEDS, COVERED, "--dsn", dsn, "--json",
                                  *_validation(server)])
    assert code == 0
    assert list(report) == ["statements"]
    first, second = report["statements"]  # type: ignore[misc]
    assert first["statement"] == NEEDS and first["reason"] is None
    assert set(first["index"]) == {"table", "columns", "ddl", "cost_before", "cost_after"}
    assert first["index"]["table"] == "public.orders"
    assert first["index"]["columns"] == ["customer_id"]
    assert first["index"]["cost_after"] < first["index"]["cost_before"] / 2
    assert second["index"] is None and "covered_by_existing_index" in second["reason"]
    assert _indexes(dsn) == before  # nothing written to the target
    # --fail-on-advice: a CI job holds a migration that needs an index
    assert main(["advise", NEEDS, "--dsn", dsn, "--fail-on-advice", *_validation(server)]) == 1
    assert main(["advise", COVERED, "--dsn", dsn, "--fail-on-advice",
                 *_validation(server)]) == 0
    text = capsys.readouterr().out
    validated = "hypopg" if server.version == 15 else "transaction"
    assert f"validated with {validated}" in text
    assert "index: CREATE INDEX CONCURRENTLY orders_customer_id_idx ON public.orders " \
           "(customer_id)" in text


@pytest.mark.parametrize("logged", [18], indirect=True, ids=["pg18"])  # 15's has hypopg
def test_without_hypopg_nothing_is_validated_unless_asked(
        logged: tuple[PgServer, str], capsys: pytest.CaptureFixture[str]) -> None:
    server, dsn = logged
    assert server.version == 18
    code, report = _json(capsys, ["advise", NEEDS, "--dsn", dsn, "--json"])
    assert code == 0
    [entry] = report["statements"]  # type: ignore[misc]
    assert entry["index"] is None and "hypopg is not installed" in entry["reason"]
    assert "--validation transaction" in entry["reason"]


def test_a_file(logged: tuple[PgServer, str], capsys: pytest.CaptureFixture[str],
                tmp_path: Path) -> None:
    server, dsn = logged
    f = tmp_path / "migration.sql"
    f.write_text(f"CREATE TABLE IF NOT EXISTS t (a int);\n{NEEDS};\n"
                 "UPDATE orders SET note = 'x' WHERE customer_id = 43;\n")
    code, report = _json(capsys, ["advise", "--file", str(f), "--dsn", dsn, "--json",
                                  *_validation(server)])
    assert code == 0
    ddl, select, update = report["statements"]  # type: ignore[misc]
    assert ddl["index"] is None and ddl["reason"].startswith("not a query")
    assert select["index"]["columns"] == ["customer_id"]
    assert update["statement"].startswith("UPDATE orders")
    assert update["index"]["columns"] == ["customer_id"]


def test_sql_on_stdin(logged: tuple[PgServer, str], capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    server, dsn = logged
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{NEEDS};\n{COVERED};\n"))
    code, report = _json(capsys, ["advise", "--dsn", dsn, "--json", *_validation(server)])
    assert code == 0
    assert [s["statement"] for s in report["statements"]] == [NEEDS, COVERED]  # type: ignore[attr-defined]
    assert report["statements"][0]["index"]["columns"] == ["customer_id"]  # type: ignore[index]


def test_the_servers_own_jsonlog_with_bind_parameters(
        logged: tuple[PgServer, str], capsys: pytest.CaptureFixture[str]) -> None:
    server, dsn = logged
    with psycopg.connect(dsn, autocommit=True) as conn:  # extended protocol: $1 bound
        conn.execute("SELECT * FROM orders WHERE customer_id = %s AND status = %s",
                     (4242, "open"))
    logs = server.datadir / "log"

    def logged_file() -> Path | None:
        for f in sorted(logs.glob("*.json")):
            if "customer_id = $1 AND status = $2" in f.read_text(errors="replace"):
                return f
        return None

    eventually(lambda: logged_file() is not None, "the statement in the server's jsonlog")
    path = logged_file()
    assert path is not None
    # the server's own detail line gives the values the statement ran with
    given = from_log(read_log(path.read_text(errors="replace")))
    assert ("4242", "open") in [v for vs in given.parameters.values() for v in vs]
    code, report = _json(capsys, ["advise", "--log", str(path), "--dsn", dsn, "--json",
                                  *_validation(server)])
    assert code == 0
    mine = [s for s in report["statements"]  # type: ignore[attr-defined]
            if "customer_id = $1 AND status = $2" in s["statement"]]
    assert len(mine) == 1
    assert mine[0]["index"]["table"] == "public.orders"
    assert mine[0]["index"]["columns"][0] == "customer_id"


def test_bad_input_is_one_line_and_exit_2(logged: tuple[PgServer, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, dsn = logged
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT * FROM orders WHERE;\n")
    garbage = tmp_path / "app.log"
    garbage.write_text("this is no log at all\n")
    cases = [
        (["advise", "--file", str(bad), "--dsn", dsn], "does not parse"),
        (["advise", "--log", str(tmp_path / "missing.json"), "--dsn", dsn], "cannot read"),
        (["advise", "--log", str(garbage), "--dsn", dsn], "is not a PostgreSQL log"),
        (["advise", "SELEC 1", "--dsn", dsn], "does not parse"),
        (["advise", NEEDS, "--dsn", "postgresql://nobody@127.0.0.1:1/none"],
         "cannot connect"),
    ]
    for argv, says in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], (argv, err)
