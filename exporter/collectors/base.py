"""What a collector module is made of: its metric family specs, its fetch and its emit.

A collector module (one per view) defines its SQL variants, its row type, an
`async fetch(conn, context) -> rows` that returns plain data (no prometheus imports), and a
pure `emit(out, target, rows)` that turns those rows into samples of the families it declares
in its `specs`. It exports one `COLLECTOR`, listed once in `exporter.collectors.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from exporter.model import ServerInfo
from pgarchitect.config import ExporterSettings

R = TypeVar("R")
Labels = tuple[str, ...]

TARGET = ("target",)
DATABASE = ("target", "datname")
TABLE = ("target", "datname", "schemaname", "relname")


@dataclass(frozen=True)
class Spec:
    """One metric family: type, labels and meaning.

    `compat`: part of the postgres_exporter compatibility set (postgres_exporter's name,
    labels and meaning; exported while `exporter.postgres_exporter_compat` is on). A name
    postgres_exporter gives a counter without `_total`, or a gauge ending in `_count`, is
    "untyped": promtool's lint rejects those as counter or gauge, PromQL does not care.
    """

    kind: str  # "counter" | "gauge" | "untyped"
    labels: tuple[str, ...]
    help: str
    compat: bool = False


def compat(kind: str, labels: tuple[str, ...], help: str) -> Spec:
    """A family of the postgres_exporter compatibility set."""
    return Spec(kind, labels, help, compat=True)


class Out:
    """The samples of one exposition, per family name, in the order families first appear.

    `compat`: whether the postgres_exporter compatibility families are wanted (emitters skip
    them otherwise).
    """

    def __init__(self, compat: bool = True) -> None:
        self.compat = compat
        self.by_name: dict[str, list[tuple[Labels, float]]] = {}

    def samples(self, name: str) -> list[tuple[Labels, float]]:
        """The sample list of family `name`, created on first use."""
        samples = self.by_name.get(name)
        if samples is None:
            samples = self.by_name[name] = []
        return samples

    def add(self, name: str, labels: Labels, value: float) -> None:
        """One sample."""
        self.samples(name).append((labels, float(value)))


@dataclass(frozen=True)
class Context:
    """What a fetch may use besides its connection.

    `memory` is the collector's own per-target state, made once by its `new_memory` (the
    statements collector's selection and caches); None for collectors without one.
    """

    server: ServerInfo
    settings: ExporterSettings
    memory: Any = None


@dataclass(frozen=True)
class Collector(Generic[R]):
    """One view: its name (the `collector` label), families, fetch and emit.

    Every collector runs on a pool connection of its own, concurrently with the others.
    `slow`: the view changes slowly (tables, indexes); it is read again every
    `exporter.slow_refresh_interval` and served from the scrape's cache meanwhile.
    """

    name: str
    specs: Mapping[str, Spec]
    fetch: Callable[[asyncpg.Connection, Context], Awaitable[R]]
    emit: Callable[[Out, str, R], None]
    slow: bool = False
    new_memory: Callable[[ExporterSettings], object] | None = None
    # Work that can wait for the next scrape (the statements' new texts): run after a round
    # in which the collector delivered, off the scrape's path, on a connection of the pool.
    after: Callable[[asyncpg.Connection, Context], Awaitable[None]] | None = None
