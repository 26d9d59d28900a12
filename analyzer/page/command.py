"""`pgarchitect report AUDIT_ID --html FILE | --link`: a stored audit's page, or a signed
link to it on the admin API (docs/report.md, "The page")."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyzer.page import write_audit_page
from analyzer.page.link import MAX_TTL, signed_url
from pgarchitect.config import Settings, parse_duration
from pgarchitect.errors import UserError


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Write the page of a stored audit (docs/report.md, "The page")."""
    text = str(args.audit_id)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise UserError(f"audit id must be a number, not {text!r}")
    if not args.html and not args.link:
        raise UserError("report: give --html FILE, --link or both")
    if args.html:
        path = write_audit_page(settings.require_store(), int(text), Path(args.html),
                                settings.analyzer.connect_timeout)
        print(f"wrote {path}")
    if args.link:
        print(_page_link(settings, int(text), parse_duration(args.expires, "--expires")))
    return 0


def _page_link(settings: Settings, audit_id: int, ttl: float) -> str:
    """The admin API's URL of the page: signed when the API has a token, else plain (the API
    is then open to local processes only)."""
    a = settings.analyzer
    base = (a.public_url or f"http://{a.listen}").rstrip("/")
    if a.admin_token is None:
        return f"{base}/admin/database/audits/{audit_id}"
    if not 0 < ttl <= MAX_TTL:
        raise UserError("--expires: a link lasts from 1s to 24h")
    return signed_url(base, a.admin_token.reveal(), audit_id, ttl)
