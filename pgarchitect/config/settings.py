"""The settings types: frozen dataclasses, one per section, with their defaults.

A field's `metadata` names a kind beyond its Python type (a duration, a cron expression, a
positive number...), which `pgarchitect.config.build` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pgarchitect.cron import next_run
from pgarchitect.dsn import Dsn, Secret
from pgarchitect.errors import ConfigError

# Field kinds beyond the plain Python type, set as dataclass field metadata.
DURATION = {"kind": "duration"}
CRON = {"kind": "cron"}
LISTEN = {"kind": "listen"}
TIMEZONE = {"kind": "timezone"}
REGEX = {"kind": "regex"}
POSITIVE = {"kind": "positive"}
NON_NEGATIVE = {"kind": "non_negative"}
POSITIVE_DURATION = {"kind": "positive_duration"}
NAME = {"kind": "name"}


@dataclass(frozen=True)
class Target:
    """A monitored database."""

    name: str = field(metadata=NAME)
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
    # Slowly changing views (settings, tables, indexes) are read again this often (0: every
    # round); their age is pg_exporter_cache_age_seconds.
    slow_refresh_interval: float = field(default=60.0, metadata=DURATION)
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


LOG_LEVELS = ("debug", "info", "warning", "error")
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

    min_calls: int = field(default=30, metadata=POSITIVE)


ASK_GENERATORS = ("retrieval", "openai")


@dataclass(frozen=True)
class AskSettings:
    """How `pgarchitect ask` answers (docs/ask.md)."""

    generator: str = field(default="retrieval",
                           metadata={"kind": "choice", "choices": ASK_GENERATORS})
    min_similarity: float = 0.55
    endpoint: str | None = None  # OpenAI-compatible base URL: {endpoint}/chat/completions
    model: str | None = None
    api_key_env: str | None = None  # the environment variable holding the key
    max_rows: int = field(default=200, metadata=POSITIVE)
    max_cost: float = field(default=1e6, metadata=POSITIVE)
    statement_timeout: float = field(default=5.0, metadata=POSITIVE_DURATION)
    request_timeout: float = field(default=60.0, metadata=POSITIVE_DURATION)


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
    embedder: str = "auto"  # MiniLM with the ask extra, else analyzer.memory.HashingEmbedder
    memory: MemorySettings = MemorySettings()
    ask: AskSettings = AskSettings()
    verification: VerificationSettings = VerificationSettings()

    def next_audit(self, after: datetime) -> datetime:
        """When `schedule` next fires after `after`, as a wall-clock time in `timezone`."""
        return next_run(self.schedule, after, self.timezone)
    # The service (docs/analyzer.md, "Service"): notifications, links, job workers.
    alertmanager_url: str | None = None
    public_url: str | None = None
    worker_concurrency: int = field(default=4, metadata=POSITIVE)
    worker_stalled_timeout: float = field(default=30.0, metadata=DURATION)
    shutdown_timeout: float = field(default=10.0, metadata=POSITIVE_DURATION)
    connection_idle_timeout: float = field(default=0.0, metadata=DURATION)  # 0: none kept (opt-in)
    # Rebuilt snapshot states the quick checks keep per process (analyzer/store/states.py).
    snapshot_cache_bytes: int = field(default=256 * 2**20, metadata=NON_NEGATIVE)
    unused_index_min_age: float = field(default=7 * 86400.0, metadata=DURATION)
    validation: ValidationSettings = ValidationSettings()


@dataclass(frozen=True)
class Settings:
    """Everything pgarchitect is configured with, validated once at start."""

    targets: tuple[Target, ...] = ()
    store: StoreSettings = StoreSettings()
    exporter: ExporterSettings = ExporterSettings()
    analyzer: AnalyzerSettings = AnalyzerSettings()
    log_level: str = field(default="info", metadata={"kind": "choice", "choices": LOG_LEVELS})

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
