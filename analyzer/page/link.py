"""Short-lived signed links to an audit's page, for a browser (which cannot send the admin
API's bearer token): `pgarchitect report AUDIT_ID --link` prints one, the admin API accepts it
for that audit's page only, until it expires.

The signature is HMAC-SHA256 over "audit-page:ID:EXPIRES" with a key derived from the admin
token (so the link never carries anything that opens the rest of the API), compared in
constant time; a link is refused after EXPIRES (Unix seconds) and when it claims to last
longer than MAX_TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

DEFAULT_TTL = 900.0  # 15 minutes
MAX_TTL = 86400.0
_PURPOSE = b"pgarchitect audit page link v1"


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), _PURPOSE, hashlib.sha256).digest()


def signature(token: str, audit_id: int, expires: int) -> str:
    """The link's signature (hex)."""
    return hmac.new(_key(token), f"audit-page:{audit_id}:{expires}".encode(),
                    hashlib.sha256).hexdigest()


def signed_url(base_url: str, token: str, audit_id: int, ttl: float = DEFAULT_TTL,
               now: float | None = None) -> str:
    """The page's URL on the admin API, valid for `ttl` seconds."""
    if not 0 < ttl <= MAX_TTL:
        raise ValueError(f"a link lasts from 1 second to {MAX_TTL:g} seconds")
    expires = int((time.time() if now is None else now) + ttl)
    query = urlencode({"expires": expires, "signature": signature(token, audit_id, expires)})
    return f"{base_url.rstrip('/')}/admin/database/audits/{audit_id}?{query}"


def valid(token: str, audit_id: int, expires: str | None, given: str | None,
          now: float | None = None) -> bool:
    """True for an unexpired link to this audit signed with this token."""
    if not expires or not given or not (expires.isascii() and expires.isdigit()) \
            or len(expires) > 12:
        return False
    at = time.time() if now is None else now
    if not at <= int(expires) <= at + MAX_TTL:
        return False
    return hmac.compare_digest(signature(token, audit_id, int(expires)).encode(),
                               given.encode("utf-8", "replace"))
