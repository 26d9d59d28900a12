"""DSNs and secrets that never print their password."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pgarchitect.errors import ConfigError

_URI_PASSWORD = re.compile(
    r"^(?P<head>postgres(?:ql)?://[^:/@]*:)(?P<pw>[^@]*)(?P<tail>@.*)$", re.I
)
_KV_PASSWORD = re.compile(
    # An already-masked value is left alone, so masking twice keeps what follows it.
    r"(?P<head>(?<![?&\w])password\s*=\s*)"
    r"(?P<pw>'(?:[^'\\]|\\.)*'|(?!\*{4}(?:[\s:),;]|$))\S+)", re.I
)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&]*)", re.I)

MASK = "****"


def mask_dsn(text: str) -> str:
    """Return text with every password in a URI or key=value DSN replaced by ****."""
    out = []
    for token in re.split(r"(\s+)", text):
        m = _URI_PASSWORD.match(token)
        if m and m.group("pw"):
            token = f"{m.group('head')}{MASK}{m.group('tail')}"
        out.append(token)
    masked = "".join(out)
    masked = _QUERY_PASSWORD.sub(lambda m: m.group("head") + MASK, masked)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, masked)


@dataclass(frozen=True)
class Secret:
    """A secret string: printing, repr and str show only a mask."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret itself, for handing to a driver; never for logs."""
        return self.value

    def __str__(self) -> str:
        return MASK if self.value else ""

    def __repr__(self) -> str:
        return f"Secret({MASK})"


@dataclass(frozen=True)
class Dsn:
    """A PostgreSQL connection string whose str() and repr() hide the password."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        """The full DSN, for the driver only."""
        return self.value

    @property
    def masked(self) -> str:
        """The DSN with its password replaced by ****."""
        return mask_dsn(self.value)

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"Dsn({self.masked!r})"


def parse_dsn(raw: str, key: str) -> Dsn:
    """Check the shape of a DSN (URI or key=value) and wrap it; errors name the config key."""
    text = raw.strip()
    if not text:
        raise ConfigError(key, "expected a PostgreSQL DSN, got an empty string")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(
                key, f"expected a postgresql:// URI, got scheme {parts.scheme!r}"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(key, f"invalid port in DSN {mask_dsn(text)}") from None
        if port is not None and not 0 < port < 65536:
            raise ConfigError(key, f"invalid port in DSN {mask_dsn(text)}")
        return Dsn(text)
    if "=" not in text:
        raise ConfigError(
            key, f"expected a postgresql:// URI or key=value DSN, got {mask_dsn(text)!r}"
        )
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # the base install (exporter only) has no libpq binding
        raise ConfigError(key, "a key=value DSN needs psycopg (pip install "
                          "'pgarchitect[analyzer]'); write it as a postgresql:// URI") from None
    try:
        conninfo_to_dict(text)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's message
        raise ConfigError(key, f"invalid DSN: {mask_dsn(str(exc)).strip()}") from None
    return Dsn(text)
