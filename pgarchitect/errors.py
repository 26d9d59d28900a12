"""User-facing errors: each one becomes a single line on stderr and an exit code."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input (config, flags, DSN, privileges): one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """The configuration is invalid; the message names the key and what was expected."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config: {key}: {problem}" if key else f"config: {problem}")


class ConnectError(UserError):
    """A database named by the user does not answer."""


class MigrationError(UserError):
    """A store migration cannot be applied."""


class ServerUnavailable(UserError):
    """A PostgreSQL server binary needed for an embedded server is not installed."""
