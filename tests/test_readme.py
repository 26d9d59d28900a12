"""README.md: links to every page of docs/, every relative link resolves, the project stands
on its own (no link outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _links() -> list[str]:
    return LINK.findall((REPO / "README.md").read_text())


def test_readme_links_every_doc() -> None:
    linked = {Path(link) for link in _links()}
    pages = {p.relative_to(REPO) for p in (REPO / "docs").glob("*.md")}
    pages.add(Path("docs/runbooks/README.md"))
    assert sorted(map(str, pages - linked)) == []


def test_readme_links_resolve_inside_the_repository() -> None:
    for link in _links():
        if re.match(r"[a-z]+://", link):
            continue
        target = (REPO / link).resolve()
        assert target.is_relative_to(REPO), link
        assert target.exists(), link
