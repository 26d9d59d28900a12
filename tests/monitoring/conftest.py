"""Fixtures for the monitoring-stack tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .stack import REPO, require_binary


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_binary("amtool")
