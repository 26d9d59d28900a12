"""DSNs and secrets that never print their password.

`mask_dsn` is the one masking function: `Dsn` / `Secret` printing, log lines, error messages,
argparse's own errors and `--check-config` all go through it. It replaces the password in

- the userinfo of any URL (`postgresql://u:PW@h`, also `http://u:PW@am:9093`);
- a `password=` / `sslpassword=` parameter of a URL query (`?password=PW&sslmode=…`, up to
  the next `&`, `#` or white space: the rest of the line stays);
- a key=value DSN, quoted or not (`password=PW`, `password='P W'`, `password=P\\ W`);
- a mapping printed as Python or JSON (`'password': 'PW'`);
- and, when given, any of the `secrets` themselves, wherever they appear (a parser's error
  echoing a fragment: `invalid percent-encoded token: "PW"`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

from pgarchitect.errors import ConfigError

MASK = "****"

# Userinfo: the user up to ':', the password up to the next '@' on the line. Wider than libpq
# (which ends it at a '/' and refuses white space) so that a password it would refuse, and
# then quote in its error, is hidden too; a URL without userinfo keeps its port unless an
# '@' follows on the same line.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:@/]*:)(?P<pw>[^@\n]*)(?=@)", re.I
)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:ssl)?password=)(?P<pw>[^&#\s]*)", re.I)
_KV_PASSWORD = re.compile(
    r"(?P<head>(?<![\w?&])(?:pg|ssl)?password\s*=\s*)"
    # Quoted (to the closing quote, or to the end when it is missing), or libpq's unquoted
    # value: up to white space, a backslash escaping the next character. An already-masked
    # value is left alone, so masking twice keeps what follows it ("password=****: refused").
    r"""(?P<pw>'(?:[^'\\]|\\.)*(?:'|\Z)|(?!\*{4}(?:[\s:),;'"]|\Z))(?:\\.|[^\s\\])+)""",
    re.I | re.S,
)
_MAPPING_PASSWORD = re.compile(
    r"""(?P<head>(?P<q>["'])(?:pg|ssl)?password(?P=q)\s*:\s*)"""
    r"""(?P<pw>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.I
)
_PATTERNS = (_URL_PASSWORD, _QUERY_PASSWORD, _KV_PASSWORD, _MAPPING_PASSWORD)


def mask_dsn(text: str, secrets: Iterable[str] = ()) -> str:
    """Return text with every password (see the module doc) replaced by ****."""
    for secret in sorted({s for s in secrets if len(s) >= 2}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group("head") + MASK, text)
    return text


def passwords(text: str) -> Iterator[str]:
    """The passwords written in `text` as written, unquoted and decoded (for `mask_dsn`)."""
    for pattern in _PATTERNS:
        for m in pattern.finditer(text):
            pw = m.group("pw")
            yield pw
            if pw[:1] in "'\"":
                pw = pw[1:-1] if len(pw) > 1 and pw[-1] == pw[0] else pw[1:]
                yield pw
            yield re.sub(r"\\(.)", r"\1", pw, flags=re.S)
            yield unquote(pw)


def has_password(text: str) -> bool:
    """Whether `text` holds a password that `mask_dsn` would hide."""
    return mask_dsn(text) != text


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


def _one_line(text: str, width: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _check_ports(ports: str, text: str, key: str) -> None:
    """libpq's parser takes any port text; a port it cannot connect to is refused here."""
    for port in ports.split(","):
        if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(key, f"invalid port {port[:20]!r} in DSN "
                                   f"{_one_line(mask_dsn(text))}")


def _uri_ports(text: str, key: str) -> str:
    """The ports of a URI's host list (`h1:5432,[::1]:5433`), comma-separated."""
    netloc = re.split(r"[/?]", text.partition("://")[2], maxsplit=1)[0]
    hosts = netloc.rpartition("@")[2]
    ports = []
    for host in hosts.split(","):
        if host.startswith("["):
            end = host.find("]")
            if end < 0:
                raise ConfigError(key, f"unterminated [ in the host of DSN "
                                       f"{_one_line(mask_dsn(text))}")
            ports.append(host[end + 1:].removeprefix(":"))
        else:
            ports.append(host.partition(":")[2])
    return ",".join(ports)


def parse_dsn(raw: str, key: str) -> Dsn:
    """Check a DSN (URI or key=value) as libpq reads it and wrap it; errors name the key.

    A URI may list several hosts (`postgresql://h1:5432,h2:5433/db`), as libpq and asyncpg
    allow. An error never shows the password, even one the parser echoes.
    """
    text = raw.strip()
    if not text:
        raise ConfigError(key, "expected a PostgreSQL DSN, got an empty string")
    uri = "://" in text
    if uri:
        scheme = text.partition("://")[0]
        if scheme.lower() not in ("postgres", "postgresql"):
            raise ConfigError(key, f"expected a postgresql:// URI, got scheme "
                                   f"{_one_line(mask_dsn(scheme), 40)!r}")
    elif "=" not in text:
        raise ConfigError(key, f"expected a postgresql:// URI or key=value DSN, got "
                               f"{_one_line(mask_dsn(text), 80)!r}")
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # the base install (exporter only) has no libpq binding
        if not uri:
            raise ConfigError(key, "a key=value DSN needs psycopg (pip install "
                              "'pgarchitect[analyzer]'); write it as a postgresql:// URI"
                              ) from None
        _check_ports(_uri_ports(text, key), text, key)
        return Dsn(text)
    try:
        params = conninfo_to_dict(text)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's message
        message = mask_dsn(str(exc), secrets=passwords(text))
        raise ConfigError(key, f"invalid DSN: {_one_line(message)}") from None
    _check_ports(str(params.get("port") or ""), text, key)
    return Dsn(text)
