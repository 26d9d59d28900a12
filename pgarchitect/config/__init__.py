"""One validated, immutable settings object.

Precedence, highest first: command-line flags, environment variables (``PGARCHITECT_*``),
the YAML file given with ``--config``, then the defaults. Everything is merged into one raw
mapping first and validated once; any problem raises :class:`ConfigError` naming the key.

- `settings`: the frozen dataclasses (one per section) and their defaults;
- `build`: the generic builder that validates a raw mapping into them;
- `files`: reading the config file and `*_file` secrets (regular, bounded, UTF-8; YAML
  without aliases or duplicate keys);
- `load`: the sources (file, environment, flags), `load_settings` and `describe`.

Import from here (`from pgarchitect.config import Settings`); the shared base, so it imports
neither the exporter, the analyzer nor the demo.
"""

from pgarchitect.config.build import parse_duration, parse_listen
from pgarchitect.config.files import MAX_FILE_BYTES, load_yaml
from pgarchitect.config.load import (
    ENV_PREFIX,
    describe,
    env_overrides,
    load_settings,
    target_from_dsn,
)
from pgarchitect.config.settings import (
    CRON,
    DURATION,
    LISTEN,
    LOG_LEVELS,
    NAME,
    POSITIVE,
    POSITIVE_DURATION,
    REGEX,
    STORE_DSN_MISSING,
    TIMEZONE,
    VALIDATION_MODES,
    AnalyzerSettings,
    AskSettings,
    ExporterSettings,
    MemorySettings,
    OrmOperation,
    OrmPathRule,
    OrmPathSettings,
    RegressionSettings,
    Settings,
    StoreSettings,
    Target,
    ValidationSettings,
    VerificationSettings,
)

__all__ = [
    "CRON", "DURATION", "ENV_PREFIX", "LISTEN", "LOG_LEVELS", "MAX_FILE_BYTES", "NAME",
    "POSITIVE", "POSITIVE_DURATION", "REGEX", "STORE_DSN_MISSING", "TIMEZONE",
    "VALIDATION_MODES", "AnalyzerSettings", "AskSettings", "ExporterSettings", "MemorySettings",
    "OrmOperation", "OrmPathRule", "OrmPathSettings", "RegressionSettings", "Settings",
    "StoreSettings", "Target", "ValidationSettings", "VerificationSettings", "describe",
    "env_overrides", "load_settings", "load_yaml", "parse_duration", "parse_listen",
    "target_from_dsn",
]
