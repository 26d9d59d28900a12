"""Server-side ORM-path histograms (docs/orm-paths.md) from PostgreSQL's jsonlog (PG15+).

PostgreSQL writes one JSON object per line when ``logging_collector = on`` and
``log_destination = 'jsonlog'``. With ``log_min_duration_statement`` (or the sampled
``log_min_duration_sample`` / ``log_statement_sample_rate``) every completed statement gives a
``duration: X ms  statement: ...`` line (simple protocol) or ``... execute NAME: ...`` line
(extended protocol; its ``parse`` and ``bind`` lines are not counted). ``ERROR`` lines of client
sessions that carry a statement count as ``outcome="error"``.

The tailer follows the newest ``*.json`` file of the directory, reads a rotated file to its
end before moving on, leaves a partial last line for the next poll, and keeps its position
(file, inode, offset) in a state file, saved *before* the lines are counted, so a restart
never counts a line twice. Bad lines are counted in
``pg_exporter_logtail_errors_total{reason}`` and skipped. Lines of the tool's own sessions
(``application_name`` starting with ``pgarchitect`` or statements starting with the
``/* pgarchitect */`` marker) are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from exporter.instrument import OrmMetrics
from pgarchitect.config import OrmPathSettings
from pgarchitect.db import is_own
from pgarchitect.log import event

log = logging.getLogger("pgarchitect.exporter.logtail")

# Closed set of reasons for pg_exporter_logtail_errors_total.
REASONS = ("malformed", "truncated", "unparsable", "too_long", "read_error", "state_error")
OWN_APPLICATION = "pgarchitect"
CHUNK = 1 << 20
MAX_LINE = 8 << 20
_APP_CACHE_LIMIT = 1024
_STATE_VERSION = 1

_DURATION = re.compile(
    r"duration: (?P<ms>\d+(?:\.\d+)?) ms"
    r"(?:  (?P<kind>statement|execute|parse|bind|fastpath function call)(?: [^:]*)?"
    r": (?P<text>.*))?",
    re.S,
)


@dataclass
class Position:
    """Where the tailer is: a file (by name and inode), the byte offset after the last line."""

    name: str
    inode: int
    offset: int
    mtime: float = 0.0
    skipping: bool = False  # inside a line that was too long, up to its newline


@dataclass(frozen=True)
class _File:
    path: Path
    inode: int
    size: int
    mtime: float


@dataclass(frozen=True)
class Observation:
    """One statement seen in the log."""

    orm_path: str
    operation: str
    datname: str
    seconds: float
    ok: bool


class LogTailer:
    """Reads a PostgreSQL jsonlog directory into the ORM-path histograms of `registry`."""

    def __init__(self, settings: OrmPathSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.directory = Path(settings.jsonlog) if settings.jsonlog else None
        self.state_file = Path(settings.state_file) if settings.state_file else None
        self.metrics = OrmMetrics(registry, settings.operations)
        self.errors = Counter(
            "pg_exporter_logtail_errors_total",
            "jsonlog lines or files the tailer could not use, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            self.errors.labels(reason)
        self.lines = Counter(
            "pg_exporter_logtail_lines_total",
            "Complete jsonlog lines the tailer has read.",
            registry=registry,
        )
        self._rules = tuple((re.compile(r.application_name), r.orm_path) for r in settings.rules)
        self._paths: dict[str, str | None] = {}
        self._failing = False
        self.position: Position | None = self._load_state()

    # --- public ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll the log directory every `poll_interval` seconds until cancelled."""
        if self.directory is None:
            log.info(event("logtail.disabled", reason="exporter.orm_paths.jsonlog is not set"))
            return
        log.info(event("logtail.started", directory=self.directory,
                       state_file=self.state_file or "-"))
        while True:
            try:
                await asyncio.to_thread(self.poll_once)
            except Exception as exc:  # never let a bad poll end the exporter's task
                self.errors.labels("read_error").inc()
                log.warning(event("logtail.poll_failed", error=f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(self.settings.poll_interval)

    def poll_once(self) -> int:
        """Read every complete line written since the last poll; returns how many were read."""
        if self.directory is None:
            return 0
        try:
            if not self.directory.is_dir():
                raise FileNotFoundError(2, "no such directory")
            files = self._files()
        except OSError as exc:
            self._read_failed(self.directory, exc)
            return 0
        self._failing = False
        if not files:
            return 0
        if self.position is None:
            # First start without a state file: begin at the end, do not replay history.
            newest = files[-1]
            self.position = Position(newest.path.name, newest.inode, newest.size, newest.mtime)
            self._save_state()
            return 0
        handled = 0
        for f, start, skipping in self._queue(files, self.position):
            try:
                handled += self._read(f, start, skipping, final=f is not files[-1])
            except OSError as exc:
                self._read_failed(f.path, exc)
                break
        return handled

    # --- files and positions ---------------------------------------------------------------

    def _files(self) -> list[_File]:
        assert self.directory is not None
        found = []
        for path in self.directory.glob("*.json"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # removed between listing and stat
            found.append(_File(path, st.st_ino, st.st_size, st.st_mtime))
        found.sort(key=lambda f: (f.mtime, f.path.name))
        return found

    @staticmethod
    def _queue(files: list[_File], pos: Position) -> list[tuple[_File, int, bool]]:
        """The files to read from where: the current one from its offset, newer ones whole."""
        for i, f in enumerate(files):
            if f.inode == pos.inode and f.path.name == pos.name:
                if f.size < pos.offset:  # truncated and rewritten in place
                    return [(f, 0, False)] + [(n, 0, False) for n in files[i + 1:]]
                return [(f, pos.offset, pos.skipping)] + [(n, 0, False) for n in files[i + 1:]]
        # The current file is gone (removed after rotation): read what came after it.
        return [(f, 0, False) for f in files if f.mtime > pos.mtime]

    def _read(self, f: _File, start: int, skipping: bool, final: bool) -> int:
        """Read `f` from `start`; a rotated-away (`final`) file's partial tail is truncated."""
        handled = 0
        offset = start
        buf = b""
        with open(f.path, "rb") as fh:
            fh.seek(start)
            st = os.fstat(fh.fileno())
            while data := fh.read(CHUNK):
                buf += data
                cut = buf.rfind(b"\n")
                if cut < 0:
                    if len(buf) > MAX_LINE:
                        if not skipping:
                            self.errors.labels("too_long").inc()
                        offset, buf, skipping = offset + len(buf), b"", True
                        self._commit(f, offset, st.st_mtime, skipping, [])
                    continue
                lines = buf[:cut].split(b"\n")
                if skipping:  # the rest of an over-long line
                    lines, skipping = lines[1:], False
                offset += cut + 1
                buf = buf[cut + 1:]
                self._commit(f, offset, st.st_mtime, skipping, self._parse_lines(lines))
                handled += len(lines)
        if buf and final:
            if not skipping:
                self.errors.labels("truncated").inc()
            offset += len(buf)
            skipping = False
        self._commit(f, offset, st.st_mtime, skipping, [])
        return handled

    def _commit(
        self, f: _File, offset: int, mtime: float, skipping: bool, seen: list[Observation]
    ) -> None:
        """Save the new position first, then count: a crash in between loses, never doubles."""
        new = Position(f.path.name, f.inode, offset, mtime, skipping)
        if new != self.position:
            self.position = new
            self._save_state()
        for o in seen:
            self.metrics.observe(o.orm_path, o.operation, o.datname, o.seconds, o.ok)

    def _read_failed(self, path: Path, exc: OSError) -> None:
        self.errors.labels("read_error").inc()
        if not self._failing:  # one line per outage, not one per poll
            log.warning(event("logtail.read_failed", path=path, error=exc.strerror or str(exc)))
        self._failing = True

    # --- state file ------------------------------------------------------------------------

    def _load_state(self) -> Position | None:
        if self.state_file is None or not self.state_file.exists():
            return None
        try:
            raw = json.loads(self.state_file.read_text(encoding="utf-8"))
            if raw.get("version") != _STATE_VERSION:
                raise ValueError(f"unknown version {raw.get('version')!r}")
            return Position(str(raw["name"]), int(raw["inode"]), int(raw["offset"]),
                            float(raw["mtime"]), bool(raw.get("skipping", False)))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.errors.labels("state_error").inc()
            log.warning(event("logtail.state_unreadable", path=self.state_file,
                              error=str(exc), action="starting at the end of the newest file"))
            return None

    def _save_state(self) -> None:
        if self.state_file is None or self.position is None:
            return
        p = self.position
        data = {"version": _STATE_VERSION, "name": p.name, "inode": p.inode, "offset": p.offset,
                "mtime": p.mtime, "skipping": p.skipping}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.state_file)  # atomic: a crash leaves the old or the new state
        except OSError as exc:
            self.errors.labels("state_error").inc()
            log.warning(event("logtail.state_not_saved", path=self.state_file,
                              error=exc.strerror or str(exc)))
            with contextlib.suppress(OSError):
                tmp.unlink()

    # --- lines -----------------------------------------------------------------------------

    def _parse_lines(self, lines: list[bytes]) -> list[Observation]:
        self.lines.inc(len(lines))
        out = []
        for raw in lines:
            seen = self.parse_line(raw)
            if seen is not None:
                out.append(seen)
        return out

    def parse_line(self, raw: bytes) -> Observation | None:
        """The statement one jsonlog line reports, or None (other line, own session, error)."""
        raw = raw.strip()
        if not raw:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:  # includes UnicodeDecodeError
            self.errors.labels("truncated" if raw.startswith(b"{") else "malformed").inc()
            return None
        if not isinstance(rec, dict):
            self.errors.labels("malformed").inc()
            return None
        app = rec.get("application_name") or ""
        message = rec.get("message")
        if not isinstance(app, str) or not isinstance(message, str):
            self.errors.labels("unparsable").inc()
            return None
        if app.startswith(OWN_APPLICATION):
            return None
        severity = rec.get("error_severity")
        if severity == "LOG" and message.startswith("duration: "):
            m = _DURATION.fullmatch(message)
            if m is None:
                self.errors.labels("unparsable").inc()
                return None
            if m.group("kind") in ("parse", "bind"):
                return None
            statement, seconds, ok = m.group("text") or "", float(m.group("ms")) / 1000.0, True
        elif severity == "ERROR" and isinstance(rec.get("statement"), str):
            statement, seconds, ok = rec["statement"], 0.0, False
        else:
            return None
        if is_own(statement):
            return None
        orm_path = self.orm_path(app)
        if orm_path is None:
            return None
        db = rec.get("dbname")
        return Observation(orm_path, self.metrics.matcher.match(statement),
                           db if isinstance(db, str) else "", seconds, ok)

    def orm_path(self, application_name: str) -> str | None:
        """The ORM path of a session (first matching rule), the default, or None to skip."""
        if application_name in self._paths:
            return self._paths[application_name]
        found: str | None = next(
            (path for rx, path in self._rules if rx.search(application_name)),
            self.settings.default_orm_path or None,
        )
        if len(self._paths) < _APP_CACHE_LIMIT:
            self._paths[application_name] = found
        return found
