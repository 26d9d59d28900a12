"""Headless Chromium for tests: the DOM a page renders to, and a screenshot of it.

Debian's `chromium` (scripts/ensure-debian-packages.sh), run with --no-sandbox (CI runs as
root) and a throw-away profile. The dumped DOM is parsed into a small element tree with the
standard library's HTML parser."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
TIMEOUT = 120.0


@dataclass
class Node:
    """One element of the rendered DOM."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None,
                 **attrs: str) -> list[Node]:
        """Descendants (and self) by tag, class and attribute values (`data_x` for data-x)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.iter()
                if (tag is None or n.tag == tag)
                and (cls is None or cls in n.attrs.get("class", "").split())
                and all(n.attrs.get(k) == v for k, v in wanted.items())]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}> in the page"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def chromium() -> str:
    """The Chromium binary; a missing one fails the test (never a skip: `make test` installs
    it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Debian's chromium is not installed (scripts/ensure-debian-packages.sh)")
    return found


def _run(page: Path, profile: Path, *flags: str) -> str:
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *flags, page.as_uri()],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def parse(text: str) -> Node:
    """An element tree of HTML text."""
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


def rendered_dom(page: Path, profile: Path) -> Node:
    """The DOM Chromium builds from `page` (after load, scripts allowed to run, if any)."""
    return parse(_run(page, profile, "--dump-dom"))


def screenshot(page: Path, profile: Path, out: Path, size: str = "1280,2400") -> Path:
    """A PNG of `page` as Chromium draws it."""
    _run(page, profile, f"--screenshot={out}", f"--window-size={size}",
         "--hide-scrollbars")
    assert out.stat().st_size > 0
    return out
