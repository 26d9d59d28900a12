"""One validated, immutable settings object.

Precedence, highest first: command-line flags, environment variables (``PGARCHITECT_*``),
the YAML file given with ``--config``, then the defaults below. Everything is merged into one
raw mapping first and validated once; any problem raises :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pgarchitect.cron import CronError, check_cron, next_run
from pgarchitect.dsn import Dsn, Secret, parse_dsn
from pgarchitect.errors import ConfigError

ENV_PREFIX = "PGARCHITECT_"

# Field kinds beyond the plain Python type, set as dataclass field metadata.
DURATION = {"kind": "duration"}
CRON = {"kind": "cron"}
LISTEN = {"kind": "listen"}
TIMEZONE = {"kind": "timezone"}
REGEX = {"kind": "regex"}
POSITIVE = {"kind": "positive"}
POSITIVE_DURATION = {"kind": "positive_duration"}


@dataclass(frozen=True)
class Target:
    """A monitored database."""

    name: str
    dsn: Dsn


@dataclass(frozen=True)
class StoreSettings:
    """Where the analyzer keeps snapshots, audits and recommendations."""

    dsn: Dsn | None = None


@dataclass(frozen=True)
class OrmPathRule:
    """Maps sessions whose application_name matches a regular expression to an ORM path."""

    application_name: str = field(metadata=REGEX)
    orm_path: str


@dataclass(frozen=True)
class OrmOperation:
    """An allow-listed `operation` label and the statement text that identifies it."""

    name: str
    statement: str


@dataclass(frozen=True)
class OrmPathSettings:
    """Server-side ORM-path histograms from PostgreSQL's jsonlog."""

    jsonlog: str | None = None
    state_file: str | None = None
    poll_interval: float = field(default=0.5, metadata=DURATION)
    rules: tuple[OrmPathRule, ...] = ()
    operations: tuple[OrmOperation, ...] = ()
    default_orm_path: str = "other"


@dataclass(frozen=True)
class ExporterSettings:
    """Settings of `pgarchitect exporter`."""

    listen: str = field(default="127.0.0.1:9188", metadata=LISTEN)
    min_refresh_interval: float = field(default=5.0, metadata=DURATION)
    statement_timeout: float = field(default=5.0, metadata=DURATION)
    lock_timeout: float = field(default=1.0, metadata=DURATION)
    connect_timeout: float = field(default=3.0, metadata=DURATION)
    scrape_timeout: float = field(default=10.0, metadata=DURATION)
    statements_top_n: int = field(default=100, metadata=POSITIVE)
    statements_keep_scrapes: int = 10
    query_text_length: int = field(default=200, metadata=POSITIVE)
    text_cache_size: int = field(default=10000, metadata=POSITIVE)
    top_tables: int = field(default=50, metadata=POSITIVE)
    top_indexes: int = field(default=100, metadata=POSITIVE)
    max_application_names: int = field(default=20, metadata=POSITIVE)
    # Hard cap on statement series per database (top lists + hysteresis), `other` excluded.
    statements_max_series: int = field(default=500, metadata=POSITIVE)
    # work_mem of the exporter's own sessions: the pg_stat_statements() result is materialized
    # and must not spill to a temp file (docs/metrics.md: a scrape writes zero temp blocks).
    work_mem: str = "64MB"
    # Collectors turned off by name (docs/metrics.md lists them; the probe `server` stays).
    disabled_collectors: tuple[str, ...] = ()
    # postgres_exporter's names for what the postgres-mixin reads
    # (docs/migrating-from-postgres_exporter.md).
    postgres_exporter_compat: bool = True
    orm_paths: OrmPathSettings = OrmPathSettings()


@dataclass(frozen=True)
class RegressionSettings:
    """When a statement counts as regressed (docs/analyzer.md)."""

    min_ratio: float = field(default=1.5, metadata=POSITIVE)
    min_delta_ms: float = 1.0
    max_p_value: float = 0.01
    min_calls: int = 20
    baseline_window: float = field(default=7 * 86400.0, metadata=DURATION)
    current_window: float = field(default=86400.0, metadata=DURATION)


VALIDATION_MODES = ("auto", "hypopg", "sandbox", "transaction", "off")


@dataclass(frozen=True)
class ValidationSettings:
    """How index recommendations are checked before they are proposed (docs/analyzer.md)."""

    mode: str = field(default="auto", metadata={"kind": "choice", "choices": VALIDATION_MODES})
    sandbox_dsn: Dsn | None = None
    lock_timeout: float = field(default=1.0, metadata=DURATION)
    statement_timeout: float = field(default=30.0, metadata=DURATION)
    # `transaction` builds the index on the target itself, blocking the table's writes for
    # the build: only on tables up to this size.
    max_table_bytes: int = field(default=100 * 1024 * 1024, metadata=POSITIVE)
    # Candidates validated per audit, heaviest (by the time they would save) first.
    max_candidates: int = field(default=1000, metadata=POSITIVE)


@dataclass(frozen=True)
class MemorySettings:
    """How past recommendations weigh on new ones (docs/analyzer.md, Memory)."""

    similar_limit: int = field(default=5, metadata=POSITIVE)
    repeat_similarity: float = 0.9
    rejected_penalty: float = 0.5


@dataclass(frozen=True)
class VerificationSettings:
    """When an applied recommendation's effect counts as measured."""

    min_calls: int = field(default=200, metadata=POSITIVE)


@dataclass(frozen=True)
class AnalyzerSettings:
    """Settings of `pgarchitect analyzer`, `snapshot` and `audit`."""

    listen: str = field(default="127.0.0.1:9189", metadata=LISTEN)
    snapshot_interval: float = field(default=300.0, metadata=DURATION)
    schedule: str = field(default="0 2 * * 0", metadata=CRON)
    timezone: str = field(default="UTC", metadata=TIMEZONE)
    retention: float = field(default=30 * 86400.0, metadata=DURATION)
    # Store layout at fleet scale (docs/scaling.md): time-partition size, and how often a
    # snapshot stores every statement rather than only the changed ones.
    partition_interval: float = field(default=86400.0, metadata=POSITIVE_DURATION)
    checkpoint_interval: float = field(default=86400.0, metadata=POSITIVE_DURATION)
    admin_token: Secret | None = None
    random_state: int = 0
    min_confidence: float = 0.8
    min_benefit: float = 1000.0  # ms of statement time saved per day (docs/analyzer.md)
    statement_timeout: float = field(default=30.0, metadata=DURATION)
    lock_timeout: float = field(default=1.0, metadata=DURATION)
    connect_timeout: float = field(default=5.0, metadata=DURATION)
    all_databases: bool = False
    max_explain: int = 200
    plan_top_n: int = 20
    cluster_distance: float = field(default=0.9, metadata=POSITIVE)
    regression: RegressionSettings = RegressionSettings()
    embedder: str = "analyzer.memory.HashingEmbedder"
    memory: MemorySettings = MemorySettings()
    verification: VerificationSettings = VerificationSettings()

    def next_audit(self, after: datetime) -> datetime:
        """When `schedule` next fires after `after`, as a wall-clock time in `timezone`."""
        return next_run(self.schedule, after, self.timezone)
    # The service (docs/analyzer.md, "Service"): notifications, links, job workers.
    alertmanager_url: str | None = None
    public_url: str | None = None
    worker_concurrency: int = field(default=4, metadata=POSITIVE)
    worker_stalled_timeout: float = field(default=30.0, metadata=DURATION)
    shutdown_timeout: float = field(default=30.0, metadata=DURATION)
    unused_index_min_age: float = field(default=7 * 86400.0, metadata=DURATION)
    validation: ValidationSettings = ValidationSettings()


@dataclass(frozen=True)
class Settings:
    """Everything pgarchitect is configured with, validated once at start."""

    targets: tuple[Target, ...] = ()
    store: StoreSettings = StoreSettings()
    exporter: ExporterSettings = ExporterSettings()
    analyzer: AnalyzerSettings = AnalyzerSettings()
    log_level: str = "info"

    def target(self, name: str) -> Target:
        """The target called `name`, or a ConfigError listing the known ones."""
        for t in self.targets:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.targets) or "none"
        raise ConfigError("targets", f"no target named {name!r} (known: {known})")

    def require_store(self) -> Dsn:
        """The store's DSN, or the one error every command that needs a store gives."""
        if self.store.dsn is None:
            raise ConfigError("store.dsn", STORE_DSN_MISSING)
        return self.store.dsn


# Every command that needs the store says this when none is configured (Settings.require_store).
STORE_DSN_MISSING = ("is required (give --store DSN, set PGARCHITECT_STORE_DSN, or set store.dsn"
                     " in the config file)")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number or a duration string such as 250ms, 5s, 1h30m, 7d."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):  # a bare number is seconds (--flag 0)
            text += "s"
        pos, seconds = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ConfigError(key, f"expected a duration like 30s, 5m or 1h30m, got {value!r}")
    else:
        raise ConfigError(key, f"expected a duration like 30s or 5m, got {type(value).__name__}")
    if seconds < 0:
        raise ConfigError(key, f"expected a non-negative duration, got {value!r}")
    return seconds


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _read_secret_file(path_value: object, key: str) -> str:
    if not isinstance(path_value, str):
        raise ConfigError(key, "expected a file path")
    try:
        return Path(path_value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path_value}: {exc.strerror}") from None


T = TypeVar("T")


def _build(cls: type[T], raw: object, path: str) -> T:
    """Validate a mapping into the frozen dataclass `cls`; errors carry the dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    secret_fields = {
        name for name in fields if _strip_optional(hints[name]) in (Dsn, Secret)
    }
    allowed = set(fields) | {f"{name}_file" for name in secret_fields}
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            expected = ", ".join(sorted(allowed))
            raise ConfigError(where, f"unknown key (expected one of: {expected})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in secret_fields and f"{name}_file" in raw:
            if name in raw:
                raise ConfigError(key, f"give either {name} or {name}_file, not both")
            values[name] = _convert(
                hints[name], _read_secret_file(raw[f"{name}_file"], key + "_file"), key, f
            )
        elif name in raw:
            values[name] = _convert(hints[name], raw[name], key, f)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "is required")
    return cls(**values)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(tp: Any, value: Any, key: str, f: dataclasses.Field[Any] | None) -> Any:
    kind = f.metadata.get("kind") if f is not None else None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        return _convert(_strip_optional(tp), value, key, f)
    if origin is tuple:
        (item_type, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return tuple(_convert(item_type, v, f"{key}[{i}]", None) for i, v in enumerate(value))
    if tp is Dsn:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a DSN string, got {type(value).__name__}")
        return parse_dsn(value, key)
    if tp is Secret:
        if not isinstance(value, str | int):
            raise ConfigError(key, f"expected a string, got {type(value).__name__}")
        return Secret(str(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)  # type: ignore[arg-type]
    if kind == "duration":
        return parse_duration(value, key)
    if kind == "positive_duration":
        seconds = parse_duration(value, key)
        if seconds <= 0:
            raise ConfigError(key, f"expected a positive duration, got {value!r}")
        return seconds
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if kind == "positive" and value <= 0:
            raise ConfigError(key, f"expected a positive integer, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if kind == "positive" and value <= 0:
            raise ConfigError(key, f"expected a positive number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        _check_string_kind(kind, value, key,
                           tuple(f.metadata.get("choices", ())) if f is not None else ())
        return value
    raise ConfigError(key, f"unsupported type {_type_name(tp)}")  # pragma: no cover


def _check_string_kind(kind: object, value: str, key: str,
                       choices: tuple[str, ...] = ()) -> None:
    if kind == "choice" and value not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {value!r}")
    if kind == "cron":
        try:
            check_cron(value)
        except CronError as exc:
            raise ConfigError(key, f"invalid cron expression {value!r}: {exc}") from None
    elif kind == "listen":
        parse_listen(value, key)
    elif kind == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(key, f"unknown time zone {value!r}") from None
    elif kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(key, f"invalid regular expression {value!r}: {exc}") from None


def parse_listen(value: str, key: str = "listen") -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets) and check the port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port_text)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a mapping; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping")
    return data


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {}
            node[p] = child
        node = child
    node[leaf] = value


def target_from_dsn(text: str, index: int = 0) -> dict[str, str]:
    """A raw target entry from `NAME=DSN` or a bare DSN (named after its database)."""
    name, sep, rest = text.partition("=")
    if sep and "://" in rest and re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        return {"name": name, "dsn": rest}
    m = re.search(r"://[^/]*/([^?]+)", text) or re.search(r"\bdbname\s*=\s*(\S+)", text)
    derived = m.group(1) if m else f"target{index + 1}"
    return {"name": derived, "dsn": text}


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Raw config from PGARCHITECT_* variables.

    ``PGARCHITECT_SECTION__KEY=value`` sets ``section.key`` (value read as YAML);
    shortcuts: ``PGARCHITECT_DSN`` (one target), ``PGARCHITECT_STORE_DSN``,
    ``PGARCHITECT_ADMIN_TOKEN``, ``PGARCHITECT_LOG_LEVEL``.
    """
    raw: dict[str, Any] = {}
    shortcuts = {
        "PGARCHITECT_STORE_DSN": "store.dsn",
        "PGARCHITECT_ADMIN_TOKEN": "analyzer.admin_token",
        "PGARCHITECT_LOG_LEVEL": "log_level",
    }
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        if var in shortcuts:
            _set_path(raw, shortcuts[var], value)
        elif var == "PGARCHITECT_DSN":
            raw["targets"] = [target_from_dsn(value)]
        elif "__" in var:
            dotted = var[len(ENV_PREFIX):].lower().replace("__", ".")
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
            _set_path(raw, dotted, parsed)
    return raw


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge file, environment and flags (in rising precedence) and validate once."""
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    raw = _deep_merge(raw, env_overrides(os.environ if environ is None else environ))
    if flags:
        raw = _deep_merge(raw, flags)
    settings = _build(Settings, raw, "")
    if settings.log_level not in _LOG_LEVELS:
        raise ConfigError("log_level", f"expected one of {', '.join(_LOG_LEVELS)}")
    names = [t.name for t in settings.targets]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("targets", f"target name {name!r} is used twice")
    return settings


def describe(settings: Settings) -> str:
    """A readable dump of the settings with every secret masked (for --check-config)."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, Dsn | Secret):
            return str(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return [plain(v) for v in obj]
        return obj

    return yaml.safe_dump(plain(settings), sort_keys=False)
