"""Plain data of one scrape, shared by every collector; no prometheus imports.

Each view's own row type lives in its collector module (exporter/collectors/<view>.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.errors import Reason


@dataclass(frozen=True)
class ServerInfo:
    """What the probe learns before any versioned SQL is chosen."""

    version_num: int
    version: str
    in_recovery: bool
    max_connections: int
    datname: str
    pgss_version: str | None
    pgss_schema: str | None
    read_all_stats: bool
    # (name, setting, unit, vartype) of the settings the compatibility set exports
    settings: tuple[tuple[str, str, str, str], ...] = ()
    started_at: float = 0.0  # pg_postmaster_start_time(), Unix time: a restart changes it


@dataclass(frozen=True)
class Failure:
    """A collector that failed in this scrape."""

    reason: Reason
    message: str


@dataclass
class ScrapeResult:
    """One database round of one target: data per collector, failures, timings.

    `data` maps a collector's name to what its fetch returned (absent: it failed or is
    disabled); `disabled` names the collectors turned off in config, which export nothing,
    not even their pg_exporter_collector_* series. `cached_at`: when each slowly changing
    view shown (settings, tables, indexes) was read from the server (Unix time).
    """

    target: str
    up: bool
    finished_at: float = 0.0
    server: ServerInfo | None = None
    data: dict[str, Any] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    durations: dict[str, float] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    errors_total: dict[tuple[str, str], int] = field(default_factory=dict)
    cached_at: dict[str, float] = field(default_factory=dict)
    rounds_total: int = 0
