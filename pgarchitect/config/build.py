"""Validating a raw mapping into the settings types: one generic builder over the dataclasses.

Every error is a `ConfigError` naming the dotted key (`exporter.orm_paths.rules[0].orm_path`)
and what was expected; a value shown in a message is cut short (`shown`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgarchitect.config.files import read_text_file, shown
from pgarchitect.cron import CronError, check_cron
from pgarchitect.dsn import Dsn, Secret, parse_dsn
from pgarchitect.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number or a duration string such as 250ms, 5s, 1h30m, 7d."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration like 30s or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):  # a bare number is seconds (--flag 0)
            text += "s"
        pos, seconds = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise ConfigError(key, f"expected a duration like 30s, 5m or 1h30m, "
                                   f"got {shown(value)}")
    else:
        raise ConfigError(key, f"expected a duration like 30s or 5m, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ConfigError(key, f"expected a finite duration, got {shown(value)}")
    if seconds < 0:
        raise ConfigError(key, f"expected a non-negative duration, got {shown(value)}")
    return seconds


def parse_listen(value: str, key: str = "listen") -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets) and check the port."""
    host, sep, port_text = value.rpartition(":")
    if (not sep or not (port_text.isascii() and port_text.isdigit())
            or not 0 <= int(port_text) < 65536):
        raise ConfigError(key, f"expected HOST:PORT, got {shown(value)}")
    return host.strip("[]") or "127.0.0.1", int(port_text)


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _read_secret_file(path_value: object, key: str) -> str:
    if not isinstance(path_value, str):
        raise ConfigError(key, "expected a file path")
    return read_text_file(path_value, "file", key).strip()


T = TypeVar("T")


def build(cls: type[T], raw: object, path: str) -> T:
    """Validate a mapping into the frozen dataclass `cls`; errors carry the dotted key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    secret_fields = {
        name for name in fields if _strip_optional(hints[name]) in (Dsn, Secret)
    }
    allowed = set(fields) | {f"{name}_file" for name in secret_fields}
    for key in raw:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            expected = ", ".join(sorted(allowed))
            raise ConfigError(where[:100], f"unknown key (expected one of: {expected})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in secret_fields and f"{name}_file" in raw:
            if name in raw:
                raise ConfigError(key, f"give either {name} or {name}_file, not both")
            values[name] = _convert(
                hints[name], _read_secret_file(raw[f"{name}_file"], key + "_file"), key, f
            )
        elif name in raw:
            values[name] = _convert(hints[name], raw[name], key, f)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "is required")
    return cls(**values)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert(tp: Any, value: Any, key: str, f: dataclasses.Field[Any] | None) -> Any:
    kind = f.metadata.get("kind") if f is not None else None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        return _convert(_strip_optional(tp), value, key, f)
    if origin is tuple:
        (item_type, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        return tuple(_convert(item_type, v, f"{key}[{i}]", None) for i, v in enumerate(value))
    if tp is Dsn:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a DSN string, got {type(value).__name__}")
        return parse_dsn(value, key)
    if tp is Secret:
        if not isinstance(value, str | int):
            raise ConfigError(key, f"expected a string, got {type(value).__name__}")
        return Secret(str(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)  # type: ignore[arg-type]
    if kind == "duration":
        return parse_duration(value, key)
    if kind == "positive_duration":
        seconds = parse_duration(value, key)
        if seconds <= 0:
            raise ConfigError(key, f"expected a positive duration, got {shown(value)}")
        return seconds
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {shown(value)}")
        if kind == "positive" and value <= 0:
            raise ConfigError(key, f"expected a positive integer, got {value}")
        if kind == "non_negative" and value < 0:
            raise ConfigError(key, f"expected 0 or a positive integer, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value}")
        if kind == "positive" and value <= 0:
            raise ConfigError(key, f"expected a positive number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {shown(value)}")
        _check_string_kind(kind, value, key,
                           tuple(f.metadata.get("choices", ())) if f is not None else ())
        return value
    raise ConfigError(key, f"unsupported type {_type_name(tp)}")  # pragma: no cover


def _check_string_kind(kind: object, value: str, key: str,
                       choices: tuple[str, ...] = ()) -> None:
    if kind == "choice" and value not in choices:
        raise ConfigError(key, f"expected one of {', '.join(choices)}, got {shown(value)}")
    if kind == "name" and not value.strip():
        raise ConfigError(key, "expected a name, got an empty string")
    if kind == "cron":
        try:
            check_cron(value)
        except CronError as exc:
            raise ConfigError(key, f"invalid cron expression {shown(value)}: {exc}") from None
    elif kind == "listen":
        parse_listen(value, key)
    elif kind == "timezone":
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(key, f"unknown time zone {shown(value)}") from None
    elif kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(key, f"invalid regular expression {shown(value)}: {exc}") from None
