"""Where settings come from: the YAML file, `PGARCHITECT_*` variables and flags, merged in
rising precedence into one raw mapping and validated once (`load_settings`)."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from pgarchitect.config.build import build
from pgarchitect.config.files import StrictLoader, load_yaml
from pgarchitect.config.settings import Settings
from pgarchitect.dsn import Dsn, Secret, mask_dsn
from pgarchitect.errors import ConfigError

ENV_PREFIX = "PGARCHITECT_"


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    *parents, leaf = dotted.split(".")
    for p in parents:
        child = node.get(p)
        if not isinstance(child, dict):
            child = {}
            node[p] = child
        node = child
    node[leaf] = value


def target_from_dsn(text: str, index: int = 0) -> dict[str, str]:
    """A raw target entry from `NAME=DSN` or a bare DSN (named after its database)."""
    name, sep, rest = text.partition("=")
    if sep and "://" in rest and re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        return {"name": name, "dsn": rest}
    m = re.search(r"://[^/]*/([^?]+)", text) or re.search(r"\bdbname\s*=\s*(\S+)", text)
    derived = m.group(1) if m else f"target{index + 1}"
    return {"name": derived, "dsn": text}


def _env_value(value: str) -> Any:
    """A variable's value read as YAML (so `5s`, `50`, `true` work), else the string."""
    try:
        return yaml.load(value, Loader=StrictLoader)
    except yaml.YAMLError:
        return value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Raw config from PGARCHITECT_* variables.

    ``PGARCHITECT_SECTION__KEY=value`` sets ``section.key`` (value read as YAML);
    shortcuts: ``PGARCHITECT_DSN`` (one target), ``PGARCHITECT_STORE_DSN``,
    ``PGARCHITECT_ADMIN_TOKEN``, ``PGARCHITECT_LOG_LEVEL``.
    """
    raw: dict[str, Any] = {}
    shortcuts = {
        "PGARCHITECT_STORE_DSN": "store.dsn",
        "PGARCHITECT_ADMIN_TOKEN": "analyzer.admin_token",
        "PGARCHITECT_LOG_LEVEL": "log_level",
    }
    for var, value in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        if var in shortcuts:
            _set_path(raw, shortcuts[var], value)
        elif var == "PGARCHITECT_DSN":
            raw["targets"] = [target_from_dsn(value)]
        elif "__" in var:
            dotted = var[len(ENV_PREFIX):].lower().replace("__", ".")
            _set_path(raw, dotted, _env_value(value))
    return raw


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge file, environment and flags (in rising precedence) and validate once."""
    raw: dict[str, Any] = load_yaml(config_file) if config_file else {}
    raw = _deep_merge(raw, env_overrides(os.environ if environ is None else environ))
    if flags:
        raw = _deep_merge(raw, flags)
    settings = build(Settings, raw, "")
    names = [t.name for t in settings.targets]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("targets", f"target name {name!r} is used twice")
    return settings


def describe(settings: Settings) -> str:
    """A readable dump of the settings with every secret masked (for --check-config).

    Every string goes through the mask, not only DSNs and secrets: a password can sit in
    the userinfo or the query of any URL (`analyzer.alertmanager_url`, `public_url`).
    """

    def plain(obj: Any) -> Any:
        if isinstance(obj, Dsn | Secret):
            return str(obj)
        if isinstance(obj, str):
            return mask_dsn(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, tuple):
            return [plain(v) for v in obj]
        return obj

    return yaml.safe_dump(plain(settings), sort_keys=False, width=float("inf"))
