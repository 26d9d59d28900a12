"""The collector registry: one module per view, each listed once here.

`server` (the probe) gates the rest (a failed probe is a down target); the others run
concurrently, each on a connection of its own, started in this order. Adding a view is one
new module with a `COLLECTOR` and one line in `VIEWS` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporter.collectors import (
    activity,
    checkpointer,
    database,
    indexes,
    locks,
    replication,
    server,
    statements,
    tables,
)
from exporter.collectors.base import Collector, Spec
from pgarchitect.errors import ConfigError

PROBE: Collector[Any] = server.COLLECTOR
VIEWS: tuple[Collector[Any], ...] = (
    statements.COLLECTOR,
    activity.COLLECTOR,
    database.COLLECTOR,
    locks.COLLECTOR,
    replication.COLLECTOR,
    tables.COLLECTOR,
    indexes.COLLECTOR,
    checkpointer.COLLECTOR,
)
REGISTRY: tuple[Collector[Any], ...] = (PROBE, *VIEWS)
NAMES: tuple[str, ...] = tuple(c.name for c in REGISTRY)
SPECS: dict[str, Spec] = {name: spec for c in REGISTRY for name, spec in c.specs.items()}

DISABLED_KEY = "exporter.disabled_collectors"


def enabled(disabled: Iterable[str]) -> tuple[Collector[Any], ...]:
    """The views left after `disabled` (names), or a ConfigError naming the key."""
    off = set(disabled)
    if PROBE.name in off:
        raise ConfigError(DISABLED_KEY, f"{PROBE.name!r} is the probe every scrape starts "
                                        "with and cannot be disabled")
    unknown = sorted(off.difference(NAMES))
    if unknown:
        raise ConfigError(DISABLED_KEY, f"unknown collector {unknown[0]!r} "
                                        f"(known: {', '.join(NAMES[1:])})")
    return tuple(c for c in VIEWS if c.name not in off)
