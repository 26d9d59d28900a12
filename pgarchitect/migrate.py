"""Store migrations: numbered SQL files, each in its own transaction, under an advisory lock.

Applied files are recorded in ``pgarchitect.schema_migrations`` with a SHA-256 checksum; a file
that was edited after it was applied is refused. Two migrators at once serialize on the
advisory lock, and the second finds nothing left to do.

A migration may hold the line ``-- @include procrastinate-schema``: it is replaced by the job
engine's schema as the installed procrastinate ships it (0005), applied in the same
transaction and recorded like any other migration; the checksum covers the file only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgarchitect.db import connect_sync, first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import MigrationError
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.migrate")

# pg_advisory_lock key: the bytes "pgarchit" as a bigint, so unrelated locks do not collide.
LOCK_KEY = int.from_bytes(b"pgarchit", "big") & 0x7FFF_FFFF_FFFF_FFFF
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_INCLUDE_JOB_ENGINE = "-- @include procrastinate-schema"

BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS pgarchitect;
CREATE TABLE IF NOT EXISTS pgarchitect.schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms double precision
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def default_directory() -> Path:
    """The migrations shipped with the package (wheel) or in the source tree (editable)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("cannot find the migrations directory")


def discover(directory: Path) -> list[Migration]:
    """All NNNN_name.sql files in version order; duplicates and strays are errors."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"migrations {found[version].path.name} and {path.name} share version {version}"
            )
        found[version] = Migration(version, path.stem, path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def migrate(dsn: Dsn, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations to the store; return the names applied now."""
    migrations = discover(directory or default_directory())
    applied_now: list[str] = []
    with connect_sync(dsn, "store", application_name="pgarchitect-migrate") as conn:
        conn.autocommit = True
        conn.execute("/* pgarchitect */ SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            try:
                with conn.transaction():
                    conn.execute(BOOKKEEPING.encode())
            except psycopg.Error as exc:
                raise MigrationError(
                    f"cannot prepare the store schema: {first_line(exc)} (the store role needs "
                    "CREATE on the database)"
                ) from None
            rows = conn.execute(
                "/* pgarchitect */ SELECT version, name, checksum"
                " FROM pgarchitect.schema_migrations"
            ).fetchall()
            done = {int(str(r[0])): str(r[2]) for r in rows}
            for mig in migrations:
                if mig.version in done:
                    checksum = done[mig.version]
                    if checksum != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.path.name} was edited after it was applied "
                            f"(recorded checksum {checksum[:12]}, file now {mig.checksum[:12]}); "
                            "add a new migration instead of changing an applied one"
                        )
                    continue
                _apply(conn, mig)
                applied_now.append(mig.name)
        finally:
            if not conn.closed:
                conn.execute("/* pgarchitect */ SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied_now


def expand(sql: str) -> str:
    """The migration's SQL with the job engine's schema put in place of its include line."""
    if _INCLUDE_JOB_ENGINE not in sql:
        return sql
    from procrastinate.schema import SchemaManager

    return sql.replace(_INCLUDE_JOB_ENGINE, SchemaManager.get_schema(), 1)


def _apply(conn: psycopg.Connection[tuple[object, ...]], mig: Migration) -> None:
    started = time.perf_counter()
    try:
        with conn.transaction():
            conn.execute(expand(mig.sql).encode())
            conn.execute(
                "INSERT INTO pgarchitect.schema_migrations (version, name, checksum, duration_ms)"
                " VALUES (%s, %s, %s, %s)",
                (mig.version, mig.name, mig.checksum, (time.perf_counter() - started) * 1000),
            )
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as exc:
        hint = ""
        if '"vector"' in str(exc):
            hint = " (the store needs pgvector >= 0.5 installed on its server)"
        raise MigrationError(
            f"migration {mig.path.name} failed: {first_line(exc)}{hint}"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MigrationError(
            f"migration {mig.path.name} failed: {first_line(exc)} (the store role needs CREATE "
            "on the database, and the vector extension must exist or be creatable)"
        ) from None
    except psycopg.Error as exc:
        raise MigrationError(f"migration {mig.path.name} failed: {first_line(exc)}") from None
    log.info(event("migrate.applied", file=mig.path.name,
                   ms=round((time.perf_counter() - started) * 1000, 1)))
