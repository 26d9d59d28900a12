"""One boundary where database errors become a closed set of reasons (by SQLSTATE)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from pgarchitect.db import first_line


class Reason(StrEnum):
    """Why a collector failed; the `reason` label of pg_exporter_collector_errors_total."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    PERMISSION = "permission"
    MISSING_EXTENSION = "missing_extension"
    NOT_PRELOADED = "not_preloaded"
    QUERY = "query"


class CollectorError(Exception):
    """A condition found by the exporter itself (no SQLSTATE), already classified."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Classified:
    """A classified failure: the reason, whether the connection is unusable, one line."""

    reason: Reason
    fatal: bool
    message: str


_BY_SQLSTATE = {
    "42501": Reason.PERMISSION,
    "42P01": Reason.MISSING_EXTENSION,
    "42883": Reason.MISSING_EXTENSION,
    "55000": Reason.NOT_PRELOADED,
    "57014": Reason.TIMEOUT,  # statement_timeout
    "55P03": Reason.TIMEOUT,  # lock_timeout
}
# Classes 08 (connection exception), 28 (authorization), 3D (no such database),
# 53 (insufficient resources, e.g. too many connections), 57P0x (shutdown / not yet up).
_CONNECT_PREFIXES = ("08", "28", "3D", "53", "57P")


def classify(exc: BaseException) -> Classified:
    """Map an exception from a collector to its Reason; `fatal` means drop the connection."""
    message = first_line(exc)
    if isinstance(exc, CollectorError):
        return Classified(exc.reason, False, message)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        if sqlstate.startswith(_CONNECT_PREFIXES):
            return Classified(Reason.CONNECT, True, message)
        return Classified(_BY_SQLSTATE.get(sqlstate, Reason.QUERY), False, message)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Classified(Reason.TIMEOUT, True, message or "timed out")
    if isinstance(exc, OSError | ConnectionError | EOFError):
        return Classified(Reason.CONNECT, True, message)
    # asyncpg's client-side connection errors carry no SQLSTATE.
    name = type(exc).__name__
    if "Connection" in name or "Interface" in name:
        return Classified(Reason.CONNECT, True, message)
    return Classified(Reason.QUERY, False, message)
