"""`pgarchitect recommendations`, `recommendations set-status` and `propose` against a real
store (PostgreSQL 18), a real target for the migrations, and a real git repository."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from analyzer import lifecycle
from analyzer.memory import HashingEmbedder, remember
from analyzer.recommend.model import Recommendation
from analyzer.store import recommendations
from analyzer.store.connection import connect_store
from pgarchitect.cli import main
from pgarchitect.config import AnalyzerSettings
from pgarchitect.demo.embedded import PgServer
from pgarchitect.dsn import Dsn
from pgarchitect.migrate import migrate
from tests.conftest import drop_database, new_database

SETTINGS = AnalyzerSettings()
HOSTILE_TABLE = 'Or"der; DROP TABLE victim; --'
HOSTILE_COLUMN = "Cust\"omer */ id\n-- x"
HOSTILE_INDEX = 'idx"; DROP TABLE victim; --'


@pytest.fixture(scope="module")
def store(pg18: PgServer) -> Iterator[str]:
    dsn = new_database(pg18, "clistore")
    migrate(Dsn(dsn))
    yield dsn
    drop_database(pg18, dsn)


@pytest.fixture(scope="module")
def target(pg18: PgServer) -> Iterator[str]:
    """A target with a table whose name and column are hostile, and a victim table."""
    dsn = new_database(pg18, "clitarget")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} ({} int, note text)").format(
            sql.Identifier(HOSTILE_TABLE), sql.Identifier(HOSTILE_COLUMN)))
        conn.execute("CREATE TABLE victim (id int)")
    yield dsn
    drop_database(pg18, dsn)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def hostile_rec(target_dsn: str) -> Recommendation:
    """DDL composed with quoted identifiers, as the generator builds it."""
    with psycopg.connect(target_dsn) as conn:
        ddl = sql.SQL("CREATE INDEX CONCURRENTLY {} ON {}.{} ({})").format(
            sql.Identifier(HOSTILE_INDEX), sql.Identifier("public"),
            sql.Identifier(HOSTILE_TABLE), sql.Identifier(HOSTILE_COLUMN)).as_string(conn)
        revert = sql.SQL("DROP INDEX CONCURRENTLY {}.{}").format(
            sql.Identifier("public"), sql.Identifier(HOSTILE_INDEX)).as_string(conn)
    return Recommendation(
        kind="create_index", table=f"public.{HOSTILE_TABLE}", columns=(HOSTILE_COLUMN,),
        ddl=ddl, revert_ddl=revert,
        rationale="Lookups by the column scan the table.\n-- DROP TABLE victim;",
        confidence=0.92, queryids=("-42",),
        statements=(f"SELECT note FROM {HOSTILE_TABLE} WHERE x = $1",),
        evidence={"statements": [{"queryid": "-42", "calls": 1200, "total_ms": 9000.0,
                                  "mean_ms": 7.5, "cost_before": 4000.0, "cost_after": 8.0,
                                  "query": "SELECT note FROM t WHERE `x` | y = $1"}],
                  "validation": {"method": "hypopg", "outcome": "index used"}},
        estimated_cost_before=4000.0, estimated_cost_after=8.0, validated_by="hypopg",
    )


def stored(store: str, target_name: str, rec: Recommendation) -> int:
    with connect_store(Dsn(store)) as conn, conn.transaction():
        out = remember(conn, target_name, rec, embedder=HashingEmbedder(), settings=SETTINGS)
    assert out.id is not None
    return out.id


def plain_rec(table: str, column: str) -> Recommendation:
    return Recommendation(
        kind="create_index", table=f"public.{table}", columns=(column,),
        ddl=f'CREATE INDEX CONCURRENTLY "{table}_{column}_idx" ON "public"."{table}" ("{column}")',
        revert_ddl=f'DROP INDEX CONCURRENTLY "public"."{table}_{column}_idx"',
        rationale="r", confidence=0.9, queryids=("1",), validated_by="hypopg")


def test_list_and_set_status(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    rec_id = stored(store, "listing", plain_rec("orders", "customer_id"))
    other = stored(store, "listing", plain_rec("events", "session_id"))
    code, out, _ = cli(capsys, "recommendations", "--store", store, "--target", "listing")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["id", "target", "status", "kind"]
    assert any(ln.split()[:3] == [str(rec_id), "listing", "proposed"] for ln in lines)

    code, out, err = cli(capsys, "recommendations", "set-status", str(rec_id), "accepted",
                         "--store", store, "--note", "for the next release")
    assert (code, out.strip()) == (0, f"recommendation {rec_id}: proposed -> accepted"), err
    code, out, _ = cli(capsys, "recommendations", "--store", store, "--target", "listing",
                       "--status", "accepted", "--json")
    (entry,) = json.loads(out)["recommendations"]
    assert entry["id"] == str(rec_id) and entry["status"] == "accepted"
    assert [(h["from"], h["to"], h["by"], h["note"]) for h in entry["history"]] == [
        (None, "proposed", "analyzer", "proposed"),
        ("proposed", "accepted", "cli", "for the next release")]

    code, _, err = cli(capsys, "recommendations", "set-status", str(other), "rejected",
                       "--store", store)
    assert code == 0, err
    # Refused transitions: one line, exit 2, nothing recorded.
    for rid, status, why in [
        (other, "applied", f"recommendation {other} is rejected: it cannot become applied "
                           "(allowed from rejected: none)"),
        (rec_id, "rejected", f"recommendation {rec_id} is accepted: it cannot become rejected"
                             " (allowed from accepted: applied)"),
        (rec_id, "verified", "verified is measured by the analyzer, not set by hand"),
        (rec_id, "done", "unknown status 'done'"),
        (999999, "accepted", "no recommendation with id 999999"),
    ]:
        code, out, err = cli(capsys, "recommendations", "set-status", str(rid), status,
                             "--store", store)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert why in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:  # refused by the parser (tests/test_config.py)
        cli(capsys, "recommendations", "set-status", "x1", "accepted", "--store", store)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "expected a recommendation id (a number)" in err
    code, _, err = cli(capsys, "recommendations", "--store", store, "--status", "bogus")
    assert code == 2 and "unknown status 'bogus'" in err
    with connect_store(Dsn(store)) as conn:
        assert len(recommendations.get(conn, rec_id).history) == 2
        assert len(recommendations.get(conn, other).history) == 2
        counts = recommendations.status_counts(conn)
    assert counts[("listing", "create_index", "accepted")] == 1
    assert counts[("listing", "create_index", "rejected")] == 1


def test_lifecycle_allows_only_the_documented_transitions() -> None:
    allowed = {(a, b) for a in lifecycle.STATUSES for b in lifecycle.STATUSES
               if lifecycle.allowed(a, b)}
    assert allowed == {
        ("proposed", "accepted"), ("proposed", "rejected"), ("proposed", "applied"),
        ("accepted", "applied"), ("applied", "verified"), ("applied", "ineffective"),
        ("applied", "reverted"), ("verified", "reverted"), ("ineffective", "reverted")}
    by_hand = {(a, b) for a, b in allowed if lifecycle.allowed(a, b, "cli")}
    assert by_hand == allowed - {("applied", "verified"), ("applied", "ineffective")}


def test_propose_writes_a_migration_psql_applies_with_hostile_names_intact(
    pg18: PgServer, store: str, target: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rec = hostile_rec(target)
    rec_id = stored(store, "hostile", rec)
    code, out, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out",
                         str(tmp_path))
    assert code == 0, err
    (mig,) = tmp_path.glob("*.sql")
    (desc,) = tmp_path.glob("*.md")
    assert f"wrote {mig}" in out and f"wrote {desc}" in out
    text = mig.read_text()
    # The one statement, byte for byte (a newline inside a quoted name included); everything
    # before it is comment, one line each, whatever the names and the rationale hold.
    assert text.endswith("\n" + rec.ddl + ";\n")
    header = text[: -len(rec.ddl) - 2].splitlines()
    assert all(ln.startswith("--") for ln in header), header
    assert any(ln.startswith("-- why: Lookups by the column scan the table. -- DROP TABLE")
               for ln in header)
    assert f"--   {rec.revert_ddl.replace(chr(10), ' ')};" in header
    assert not any(ln.upper().startswith(("BEGIN", "COMMIT")) for ln in text.splitlines())
    done = subprocess.run([str(pg18.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d",
                           target, "-f", str(mig)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(target) as conn:
        row = conn.execute("SELECT c.relname, t.relname, i.indisvalid FROM pg_index i"
                           " JOIN pg_class c ON c.oid = i.indexrelid"
                           " JOIN pg_class t ON t.oid = i.indrelid"
                           " WHERE t.relname = %s", (HOSTILE_TABLE,)).fetchone()
        assert row == (HOSTILE_INDEX, HOSTILE_TABLE, True)
        assert conn.execute("SELECT to_regclass('public.victim')").fetchone() == ("victim",)
        defs = {str(r[0]): str(r[1]) for r in conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass", (sql.Identifier(HOSTILE_TABLE).as_string(conn),)
        ).fetchall()}
    # The catalog shows it (under PostgreSQL's own quoting) as the recommended index.
    from analyzer.verify import observe_catalog

    with connect_store(Dsn(store)) as conn:
        assert [c.to_status for c in observe_catalog(conn, "hostile", defs)] == ["applied"]

    md = desc.read_text()
    assert md.startswith("# pgarchitect: create index on public.")
    for section in ("## What and why", "## Statements", "## Plans and costs",
                    "## How it was validated", "## Expected saving",
                    "## How pgarchitect will verify it", "## How to roll back"):
        assert section in md
    assert rec.ddl in md and rec.revert_ddl in md
    assert "4,000.00 -> 8.00 (99.8% less)" in md
    assert "up to 9.0 s" in md
    assert "`SELECT note FROM t WHERE 'x' \\| y = $1`" in md  # a pipe stays in its cell
    # The before / after chart beside it, linked from the text, valid SVG with its figures.
    import xml.etree.ElementTree as ET

    (chart,) = tmp_path.glob("*.svg")
    assert f"wrote {chart}" in out and f"]({chart.name})" in md
    root = ET.fromstring(chart.read_text())
    desc = root.find("{http://www.w3.org/2000/svg}desc")
    assert desc is not None and "before" in (desc.text or "") and "after" in (desc.text or "")
    assert root.find("{http://www.w3.org/2000/svg}title") is not None


def test_propose_refuses_what_is_not_pending(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec_id = stored(store, "refuse", plain_rec("orders", "status"))
    with connect_store(Dsn(store)) as conn:
        recommendations.set_status(conn, rec_id, "rejected", "cli", None)
    code, out, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out",
                         str(tmp_path))
    assert code == 2 and out == "" and not list(tmp_path.iterdir())
    assert err.strip() == (f"pgarchitect: recommendation {rec_id} is rejected: only a "
                           "proposed or accepted recommendation becomes a migration")
    two = Recommendation(kind="create_index", table="public.t", columns=("a",),
                         ddl="CREATE INDEX ON t (a); DROP TABLE victim", revert_ddl="",
                         rationale="r", confidence=0.9)
    rec_id = stored(store, "refuse", two)
    code, _, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out",
                       str(tmp_path))
    assert code == 2 and "its DDL is 2 statements, not one" in err


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def new_repo(repo: Path) -> Path:
    """A git repository with one commit on `main` and an identity of its own."""
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "config", "user.name", "Dev")
    git(repo, "config", "user.email", "dev@example.org")
    (repo / "README").write_text("app\n")
    git(repo, "add", "README")
    git(repo, "commit", "--quiet", "-m", "init")
    return repo


def test_propose_into_a_git_repository_makes_one_commit(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = new_repo(tmp_path / "app")
    (repo / "wip.txt").write_text("someone's uncommitted work\n")
    git(repo, "add", "wip.txt")  # staged, not ours: must stay out of the commit
    rec_id = stored(store, "git", plain_rec("orders", "created_at"))

    code, out, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out",
                         "db/migrations", "--git", str(repo))
    assert code == 0, err
    branch = f"pgarchitect/recommendation-{rec_id}"
    assert git(repo, "branch", "--show-current") == branch
    assert git(repo, "rev-list", "--count", f"main..{branch}") == "1"
    assert git(repo, "rev-list", "--count", "main") == "1"
    files = git(repo, "show", "--name-only", "--format=", "HEAD").splitlines()
    stem = f"db/migrations/pgarchitect_{rec_id}_create_index_public_orders"
    assert sorted(files) == [f"{stem}.md", f"{stem}.sql"]
    assert git(repo, "log", "-1", "--format=%s") == \
        "pgarchitect: create index on public.orders (created_at)"
    assert git(repo, "log", "-1", "--format=%an <%ae>") == "Dev <dev@example.org>"
    assert "wip.txt" in git(repo, "diff", "--cached", "--name-only")
    assert f"committed {git(repo, 'rev-parse', 'HEAD')[:12]} on branch {branch}" in out
    assert git(repo, "remote") == ""

    code, _, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out", "x",
                       "--git", str(repo))
    assert code == 2 and f"branch {branch} already exists" in err
    code, _, err = cli(capsys, "propose", str(rec_id), "--store", store, "--out", "x",
                       "--git", str(tmp_path / "nowhere"))
    assert code == 2 and "git rev-parse" in err and "Traceback" not in err


def _stored(rec: Recommendation, status: str = "proposed") -> lifecycle.StoredRecommendation:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    return lifecycle.StoredRecommendation(
        id=7, target="app", status=status, recommendation=rec, audit_id=3, created_at=now,
        last_seen_at=now, times_seen=2, status_changed_at=now)


def test_a_recommendation_without_ddl_gets_only_a_description(tmp_path: Path) -> None:
    from analyzer.propose import propose

    rec = Recommendation(kind="n_plus_one", table="public.orders", columns=(), ddl="",
                         revert_ddl="", rationale="400 calls per request, one row each.",
                         confidence=0.85, queryids=("5",),
                         statements=("SELECT * FROM orders WHERE id = $1",))
    result = propose(_stored(rec), tmp_path, SETTINGS)
    assert result.migration is None and list(tmp_path.iterdir()) == [result.description]
    md = result.description.read_text()
    assert "SELECT * FROM orders WHERE id = $1" in md and "No revert DDL." in md


def test_a_migration_without_concurrently_says_nothing_about_transactions() -> None:
    from analyzer.propose import migration_text

    rec = Recommendation(kind="analyze", table="public.orders", columns=(),
                         ddl='ANALYZE "public"."orders"', revert_ddl="",
                         rationale="statistics are stale", confidence=0.9)
    text = migration_text(_stored(rec, "accepted"))
    assert text.endswith('\nANALYZE "public"."orders";\n')
    assert "CONCURRENTLY" not in text and "revert" not in text
