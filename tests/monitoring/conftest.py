"""Fixtures and the `live_stack` marker for the monitoring-stack tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .stack import REPO, require_binary

LIVE_ENV = "PGARCHITECT_REQUIRE_LIVE"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "live_stack: needs the real exporter, analyzer and reference app; runs only with "
        f"{LIVE_ENV}=1 (deselected otherwise)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the live-stack tests unless PGARCHITECT_REQUIRE_LIVE=1."""
    if os.environ.get(LIVE_ENV) == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("live_stack")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("live_stack")]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_binary("amtool")
