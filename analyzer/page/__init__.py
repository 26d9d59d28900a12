"""The audit as a page: one self-contained HTML file (inline CSS and SVG, no script, no network
at view time) made from an audit's stored report and the store's snapshots of its windows
(docs/report.md, "The page").

`audit_page` renders it on a store session; `write_audit_page` writes it to a file (the CLI's
`report --html` and `audit --html`, and the demo); the admin API serves `audit_page` for
`Accept: text/html`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psycopg

from analyzer.page import data, html
from analyzer.page.data import NoReport
from analyzer.store.connection import Conn, connect_store
from pgarchitect.db import first_line
from pgarchitect.dsn import Dsn
from pgarchitect.errors import UserError

__all__ = ["NoReport", "audit_page", "page_from_store", "render_page", "write_audit_page",
           "write_text"]


def render_page(page: data.PageData) -> str:
    """The HTML of a page's data (pure)."""
    return html.render(page)


def audit_page(store: Conn, audit_id: int) -> str:
    """The page of one audit (NoReport when it has none)."""
    return html.render(data.load(store, audit_id))


def page_from_store(store_dsn: Dsn, audit_id: int, connect_timeout: float = 5.0) -> str:
    """`audit_page` on a session of its own (read only, closed after)."""
    with contextlib.closing(connect_store(store_dsn, connect_timeout)) as store:
        store.autocommit = False
        store.read_only = True  # one read-only transaction: a consistent picture, no writes
        try:
            return audit_page(store, audit_id)
        except psycopg.Error as exc:
            raise UserError(f"cannot read audit {audit_id} from the store: "
                            f"{first_line(exc)}") from None
        finally:
            with contextlib.suppress(psycopg.Error):
                store.rollback()


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path`, replacing a regular file but never following a symlink there;
    UserError with one line when it cannot."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    return path


def write_audit_page(store_dsn: Dsn, audit_id: int, path: Path,
                     connect_timeout: float = 5.0) -> Path:
    """Write the page of audit `audit_id` to `path` and return the path."""
    return write_text(path, page_from_store(store_dsn, audit_id, connect_timeout))
